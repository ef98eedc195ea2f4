"""The outbox relay (``qa-relay``): publishes committed ``qa.outbox`` rows to RabbitMQ.

Modules: ``main`` (entrypoint), ``relay`` (leadership terms, maintenance), ``leader``
(advisory locks, LISTEN), ``pipeline`` (claim -> publish -> mark), ``publisher`` (one
confirming channel), ``store`` (SQL), ``metrics`` (Prometheus).

Choices where the design is silent:

- One active relay at a time (advisory lock); others stand by. This keeps
  per-aggregate publish order while nothing fails. There is no concurrent mode: one
  leader already keeps the broker busy (two overlapping batches, many confirms in
  flight), and several active relays would interleave an aggregate's events.
- A row that fails (nack, unroutable, missing exchange, unencodable, timeout, channel
  loss) gets attempts+1, last_error and next_attempt_at = now + 2^attempts s (capped at
  300 s); rows behind it go ahead, so a later event of the same aggregate can overtake
  a failing one. While the broker is down nothing is claimed at all.
- Delivery is at least once: a confirm lost with a connection, or a crash between
  confirm and mark, re-publishes the row (same ``message_id``); consumers dedupe.
"""
