"""Outgoing webhooks as a library: the SSRF guard, signing, the secret vault, the retry schedule and the
HTTP sender. No Flask, Celery or settings: the edges wire it (api/ at submission, workers/ at delivery)."""
