"""Rate limits shared by the upload page and the upload API (counted in the cache: Redis in production)."""
from rest_framework.throttling import UserRateThrottle


class UploadThrottle(UserRateThrottle):
    scope = "upload"
