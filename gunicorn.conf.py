"""gunicorn settings for the web process (Procfile, tests/integration/stack.py).

gunicorn reads ./gunicorn.conf.py on its own when started from the repository root without
``--config``; the Procfile and the test stack name it explicitly all the same. Command-line options
override what is set here.
"""

import os

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("QGATE_WEB_THREADS", "16"))

# gthread, answering gunicorn's own errors (bad request line, headers too large...) as JSON and
# without a Server header.
worker_class = "api.server.Worker"
# JSON access and error lines on stdout; the access line has the path but never the query string.
logger_class = "api.server.Logger"
accesslog = "-"
# Only used if logger_class is ever dropped: gunicorn's default format logs the request line, query
# string included, and the Referer.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms'
