#!/usr/bin/env bash
# The seed's deploy.sh loop (shared/seed/deployment-with-containers.md, "deploy.sh"), as
# written there, for bench/deploy_peers.py to time side by side with `invoke deploy`.
# Changes from the seed, none of which touches the loop:
#   - the hard-coded sample-webapp names are the variables the seed's own header exports
#     (ECS_CLUSTER_NAME, ECS_SERVICE_NAME, ECS_TASK_FAMILY_NAME, ECS_CONTAINER_DEFINITION_NAME,
#     ECR_REPOSITORY_NAME), so each run deploys its own arranged service;
#   - push_ecr_image and the closing ALB curl are left out: the image record is already in
#     ECR and every tool is timed without a smoke test;
#   - the aws CLI is pointed at the emulator by AWS_ENDPOINT_URL, and `aws configure set`
#     writes to AWS_CONFIG_FILE (a scratch file), never to ~/.aws.

# more bash-friendly output for jq
JQ="jq --raw-output --exit-status"

configure_aws_cli(){
	aws --version
	aws configure set default.region us-east-1
	aws configure set default.output json
}

deploy_cluster() {

    family="$ECS_TASK_FAMILY_NAME"

    make_task_def
    register_definition
    if [[ $(aws ecs update-service --cluster "$ECS_CLUSTER_NAME" --service "$ECS_SERVICE_NAME" --task-definition $revision | \
                   $JQ '.service.taskDefinition') != $revision ]]; then
        echo "Error updating service."
        return 1
    fi

    # wait for older revisions to disappear
    # not really necessary, but nice for demos
    for attempt in {1..30}; do
        if stale=$(aws ecs describe-services --cluster "$ECS_CLUSTER_NAME" --services "$ECS_SERVICE_NAME" | \
                       $JQ ".services[0].deployments | .[] | select(.taskDefinition != \"$revision\") | .taskDefinition"); then
            echo "Waiting for stale deployments:"
            echo "$stale"
            sleep 5
        else
            echo "Deployed!"
            return 0
        fi
    done
    echo "Service update took too long."
    return 1
}

make_task_def(){
	task_template='[
		{
			"name": "%s",
			"image": "%s.dkr.ecr.us-east-1.amazonaws.com/%s:%s",
			"essential": true,
			"memory": 200,
			"cpu": 10,
			"portMappings": [
				{
					"containerPort": 8080,
					"hostPort": 80
				}
			]
		}
	]'

	task_def=$(printf "$task_template" "$ECS_CONTAINER_DEFINITION_NAME" $AWS_ACCOUNT_ID "$ECR_REPOSITORY_NAME" $CIRCLE_SHA1)
}

register_definition() {

    if revision=$(aws ecs register-task-definition --container-definitions "$task_def" --family $family | $JQ '.taskDefinition.taskDefinitionArn'); then
        echo "Revision: $revision"
    else
        echo "Failed to register task definition"
        return 1
    fi

}

configure_aws_cli
deploy_cluster
