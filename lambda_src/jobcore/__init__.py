"""The pure core of the job pipeline: job model, lifecycle, routing, tasks, cost.

Nothing in this package imports boto3, reads the environment or does I/O of its own: the outside
world reaches it through the ports in :mod:`jobcore.ports`, implemented by :mod:`jobadapters`.
"""
