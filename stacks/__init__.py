"""The CDK app: configuration, the two stacks (stateful data, stateless service) and their constructs."""
