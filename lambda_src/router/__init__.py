"""The router Lambda: API Gateway REST proxy events in, jobs routed, run or queued."""
