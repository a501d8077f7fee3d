import os
import sys

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
# Web processes serve with threads (WEB_THREADS) whose requests mostly wait on PostgreSQL.
# A thread back from a query waits for the thread running Python to let go of the GIL, up to
# the switch interval at each of a request's 10-30 queries: 5 ms by default, 1 ms here. Under
# bench/chat_load.py's load, at 3 x 16 threads, the annotators' submit+next p95 was 172 ms
# with this alone against 184-410 ms without (ARCHITECTURE.md, "Web processes").
sys.setswitchinterval(0.001)
application = get_wsgi_application()
