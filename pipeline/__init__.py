"""Carry a service from commit to a verified deployment on AWS ECS."""
