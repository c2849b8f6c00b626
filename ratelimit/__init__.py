"""Rate limiting on the `limits` library's moving window: what the limits are (``policy``), how a request
is checked against them (``limiter``), and the failed-login throttle (``logins``). No web framework and no
settings module here: the ingress (``api/rate_limits.py``) builds these from the settings and speaks HTTP."""
