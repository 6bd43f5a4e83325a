"""An example paid container product: a WSGI app served by several gunicorn workers."""
