"""The rollout engine: N services through one engine, each judged by its deployment strategy.

A deploy is a release of one service. `engine.advance` starts every service's rollout
(the strategy's `start`), waits for all of them with one batched read per round (the
strategy's `observe` judges each answer) and smoke-tests them; `engine.recover` returns
every changed service to where it was (the strategy's `recover`), never over a deploy
another pipeline started. The strategy is chosen by name from `strategy.STRATEGIES`
(ECS's `deploymentConfiguration.strategy`): ROLLING today; BLUE_GREEN, LINEAR and CANARY
plug in as one module each.
"""
