# Sourced by the start-* scripts of the local topology (Procfile): one public port, two internal.
#   WEB_PORT       public: nginx, REST and WebSocket by path (default 8003)
#   WEB_HTTP_PORT  REST (granian) (default WEB_PORT + 1), loopback only
#   WS_PORT        the ASGI server, WebSocket (default WEB_PORT + 2), loopback only
WEB_PORT=${WEB_PORT:-8003}
WEB_HTTP_PORT=${WEB_HTTP_PORT:-$((WEB_PORT + 1))}
WS_PORT=${WS_PORT:-$((WEB_PORT + 2))}
export WEB_PORT WEB_HTTP_PORT WS_PORT
