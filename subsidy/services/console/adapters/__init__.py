"""The console's outside world: the services over gRPC (``grpc.py``), the
web pages (``web.py``), sign-in (``signin.py``)."""
