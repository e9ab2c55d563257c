"""Job endpoints, included under /api/v1/ by auteur/urls.py.

One submission path per job type (and the batch's), listed before `jobs/<job_id>` so that a type
name is never read as an id; a POST to any other `jobs/<x>` is a 404 `unknown_job_type`.
"""

from django.urls import path

from jobs.apis import (
    JOB_QUOTE_APIS,
    JOB_SUBMIT_APIS,
    JobCancelApi,
    JobDetailApi,
    JobEventListApi,
    JobListApi,
    JobRetryApi,
    JobTypeListApi,
)
from jobs.batch_apis import (
    BatchDetailApi,
    BatchListApi,
    BatchManifestApi,
    BatchQuoteApi,
    BatchSubmitApi,
    BulkCancelApi,
    BulkRetryApi,
)

urlpatterns = [
    path("jobs", JobListApi.as_view(), name="job-list"),
    path("jobs/types", JobTypeListApi.as_view(), name="job-types"),
    path("jobs/batch", BatchSubmitApi.as_view(), name="job-batch-submit"),
    path("jobs/batch/quote", BatchQuoteApi.as_view(), name="job-batch-quote"),
    path("jobs/bulk/cancel", BulkCancelApi.as_view(), name="job-bulk-cancel"),
    path("jobs/bulk/retry", BulkRetryApi.as_view(), name="job-bulk-retry"),
    path("batches", BatchListApi.as_view(), name="batch-list"),
    path("batches/<str:batch_id>", BatchDetailApi.as_view(), name="batch-detail"),
    path("batches/<str:batch_id>/manifest", BatchManifestApi.as_view(), name="batch-manifest"),
    *(
        path(f"jobs/{job_type}", api.as_view(), name=f"job-submit-{job_type}")
        for job_type, api in JOB_SUBMIT_APIS.items()
    ),
    *(
        path(f"jobs/{job_type}/quote", api.as_view(), name=f"job-quote-{job_type}")
        for job_type, api in JOB_QUOTE_APIS.items()
    ),
    path("jobs/<str:job_id>", JobDetailApi.as_view(), name="job-detail"),
    path("jobs/<str:job_id>/events", JobEventListApi.as_view(), name="job-events"),
    path("jobs/<str:job_id>/cancel", JobCancelApi.as_view(), name="job-cancel"),
    path("jobs/<str:job_id>/retry", JobRetryApi.as_view(), name="job-retry"),
]
