"""Names of the persistent shapes, shared by the runtime, the CDK constructs and the local runtime.

Changing one of these changes a stateful resource in every deployed account: don't.
"""

from jobcore.schema_keys import INPUTS_PREFIX, RESULTS_PREFIX  # noqa: F401 - re-exported for the constructs

JOBS_PARTITION_KEY = "job_id"
TENANT_INDEX = "by_tenant"
TENANT_INDEX_PARTITION_KEY = "tenant_id"
TENANT_INDEX_SORT_KEY = "created_at"
TTL_ATTRIBUTE = "expires_at"
