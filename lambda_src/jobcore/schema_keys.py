"""Where a job's documents live in the blob store (S3 keys)."""

RESULTS_PREFIX = "results/"
INPUTS_PREFIX = "inputs/"


def result_key(job_id: str) -> str:
    return f"{RESULTS_PREFIX}{job_id}.json"


def file_key(job_id: str, name: str) -> str:
    """A file a task produced besides its result (``results/<job id>/<name>``, kept as long as results)."""
    return f"{RESULTS_PREFIX}{job_id}/{name}"


def partial_key(job_id: str) -> str:
    """The answers a multi-call job already has, kept between its runs (``results/<job id>/partial.json``, kept as
    long as results), so that a retry makes only the calls that were refused."""
    return f"{RESULTS_PREFIX}{job_id}/partial.json"


def input_key(job_id: str) -> str:
    return f"{INPUTS_PREFIX}{job_id}.json"


UPLOADS_PREFIX = "uploads/"


def upload_key(tenant_id: str, upload_id: str) -> str:
    """A tenant's uploaded input (``uploads/<tenant>/<upload id>``): the tenant in the key scopes it."""
    return f"{UPLOADS_PREFIX}{tenant_id}/{upload_id}"
