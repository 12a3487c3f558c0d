"""The queue worker: long-polls a lane's SQS queue and runs jobs through the shared core."""
