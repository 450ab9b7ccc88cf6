"""The node's TCP listeners: connection caps, timeouts and HTTP parser errors.

Theory of operation
-------------------
Both ports (client API and peer links) are served by :class:`GuardedSite`
instead of aiohttp's ``TCPSite``.  The site listens for plain TCP and
counts every accepted socket in its port's :class:`ConnectionTable`
*before* anything else happens, TLS handshake included: asyncio's
``create_server(ssl=...)`` reports a connection to its protocol only once
the handshake is done, so a counter there never sees the sockets an
attacker leaves half-way through a handshake.  An admitted socket is
upgraded with ``loop.start_tls`` (bounded by ``tls_handshake_timeout_ms``)
and then handed to aiohttp's HTTP protocol (:class:`NodeRequestHandler`).

Limits (``NodeLimits``):

- ``max_connections_per_address``: connections from one address (an IPv6
  client's /64) on one port.  A new one over the cap is closed at once.
- ``max_connections_per_port``: on the API port, connections over the cap
  are closed at once.  On the peer port the cap applies to connections not
  known to be a validator's, and a new one evicts one of those instead:
  the oldest from the address holding the most (:class:`ByAddress`).  A
  validator's link needs a few round trips to identify itself; strangers,
  however many, then only churn each other, and a newcomer from an address
  holding few is evicted only if every address holds as few.  A connection is known to be a validator's once its TLS
  certificate names a validator (mutual TLS on the peer port), or, without
  TLS, once its signed link handshake succeeds (node/runtime/peers.py calls
  :func:`mark_authenticated`); from then on it counts against
  ``max_connections_per_validator`` for that validator only, where a newer
  link replaces the oldest (a restarted validator's old link may linger).
- ``connection_idle_timeout_ms``: aiohttp's keep-alive timer, armed when a
  connection is made and after every response, closes a connection still
  waiting for a complete request when it fires; a request in flight (an
  event stream, a peer link) is never cut by it.  So a slowloris caller
  that trickles a request's headers is closed too.
- ``tls_handshake_timeout_ms``: a handshake not done in time closes the
  connection.

When a port starts refusing or evicting, the node logs one WARNING line,
and one INFO line when it has shed nothing for ``SHED_QUIET_S`` (with the
count); ``provenet_connections_shed_total{port,reason}`` counts every one
and ``provenet_connections_open{port}`` shows the current load.

Layout: ``connections.py`` keeps the tables (no I/O), ``shedding.py`` the
metrics and shed log, ``memory.py`` the heap trimmer, ``http_errors.py``
aiohttp's protocol with errors in the API's shape, ``port.py`` one port and
its connections (how a closed connection is accounted for), ``site.py`` the
accept loop, binding and :func:`~node.runtime.listener.site.listen`.
"""
