"""Writes of the privacy app, one module per concern: consent (scope changes), withdrawal (photo
deletion and the copies it reaches), erasure (accounts), downloads (personal-data zips), sweep
(retries and expiry), orphans (files without rows, rows without files)."""
