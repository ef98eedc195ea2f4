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

# The relay declares and publishes to qa.events, and publishes dead-letter replays
# through the default exchange (resource name amq.default).
user qa_relay "$QA_RELAY_AMQP_PASSWORD" '^qa\\.events$' '^(qa\\.events|amq\\.default)$' '^$'
# The feed consumer and the archiver declare the feed topology, consume from it, and
# publish retries and dead letters through the default exchange.
FEED='^(qa\\.events|feed\\..*)$'
user qa_consumer "$QA_CONSUMER_AMQP_PASSWORD" "$FEED" '^(amq\\.default|feed\\..*)$' "$FEED"
user qa_archiver "$QA_ARCHIVER_AMQP_PASSWORD" "$FEED" '^(amq\\.default|feed\\..*)$' "$FEED"

# The operators' console reads queue figures through the management API only: the
# `monitoring` tag, and no right to configure, write or read any queue.
curl -fsS -u "$AUTH" -X PUT -H 'content-type: application/json' \
    -d "{\"password\":\"$QA_CONSOLE_AMQP_PASSWORD\",\"tags\":\"monitoring\"}" \
    "$API/users/qa_console" >/dev/null
curl -fsS -u "$AUTH" -X PUT -H 'content-type: application/json' \
    -d '{"configure":"^$","write":"^$","read":"^$"}' "$API/permissions/%2F/qa_console" >/dev/null
echo "user qa_console ready"
