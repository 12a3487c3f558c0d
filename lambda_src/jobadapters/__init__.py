"""Adapters: boto3, the anthropic SDK and HTTP wrapped behind the ports that ``jobcore`` declares.

Shared by the router Lambda and the worker container: one copy, bundled into both.
"""
