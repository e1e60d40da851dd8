"""HTTP requests as the server will read them: the request stream cut into
requests, their parts decoded the way the application sees them, and the
cache of parts already known clean."""
