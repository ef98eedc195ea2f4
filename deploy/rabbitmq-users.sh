#!/bin/sh
# One-shot: creates one RabbitMQ user per process through the management API, each
# allowed only the exchanges and queues it uses. The API process needs no broker access.
set -eu
API="http://rabbitmq:15672/api"
AUTH="$RABBITMQ_ADMIN_USER:$RABBITMQ_ADMIN_PASSWORD"

user() {  # name password configure write read
    curl -fsS -u "$AUTH" -X PUT -H 'content-type: application/json' \
        -d "{\"password\":\"$2\",\"tags\":\"\"}" "$API/users/$1" >/dev/null
    curl -fsS -u "$AUTH" -X PUT -H 'content-type: application/json' \
        -d "{\"configure\":\"$3\",\"write\":\"$4\",\"read\":\"$5\"}" \
        "$API/permissions/%2F/$1" >/dev/null
    echo "user $1 ready"
}

subscriber() {  # user password name: a subscriber process (qa-consumer run NAME)
    # Declares qa.events and its own queues (<name>.events, .retry.*, .dead), binds its
    # queue, consumes it, and publishes retries and dead letters via the default exchange.
    own="^(qa\\\\.events|$3\\\\..*)\$"
    user "$1" "$2" "$own" "^(amq\\\\.default|$3\\\\..*)\$" "$own"
}

# The relay declares and publishes to qa.events, and publishes dead-letter replays
# through the default exchange (resource name amq.default).
user qa_relay "$QA_RELAY_AMQP_PASSWORD" '^qa\\.events$' '^(qa\\.events|amq\\.default)$' '^$'
# One line per subscriber (qa-consumer list shows them).
subscriber qa_consumer "$QA_CONSUMER_AMQP_PASSWORD" feed
subscriber qa_notifier "$QA_NOTIFIER_AMQP_PASSWORD" notifier
# The archiver declares and consumes every subscriber's <name>.dead, nothing else.
user qa_archiver "$QA_ARCHIVER_AMQP_PASSWORD" '\\.dead$' '^$' '\\.dead$'

# The operators' console reads queue figures through the management API only: the
# `monitoring` tag, and no right to configure, write or read any queue.
curl -fsS -u "$AUTH" -X PUT -H 'content-type: application/json' \
    -d "{\"password\":\"$QA_CONSOLE_AMQP_PASSWORD\",\"tags\":\"monitoring\"}" \
    "$API/users/qa_console" >/dev/null
curl -fsS -u "$AUTH" -X PUT -H 'content-type: application/json' \
    -d '{"configure":"^$","write":"^$","read":"^$"}' "$API/permissions/%2F/qa_console" >/dev/null
echo "user qa_console ready"
