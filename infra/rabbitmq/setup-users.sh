#!/usr/bin/env bash
# Once per cluster, on any node: the relay's publisher (MQTT_USERNAME/MQTT_PASSWORD) and the management user
# the relay closes connections with (RABBITMQ_MANAGEMENT_USERNAME/RABBITMQ_MANAGEMENT_PASSWORD). Desks have no
# users: they present session tokens. Not run by the suite, which loads the same users from a definitions file.
set -euo pipefail
: "${MQTT_PASSWORD:?set MQTT_PASSWORD}" "${RABBITMQ_MANAGEMENT_PASSWORD:?set RABBITMQ_MANAGEMENT_PASSWORD}"
service_user="${MQTT_USERNAME:-relay-service}"
admin_user="${RABBITMQ_MANAGEMENT_USERNAME:-relay-admin}"
rabbitmqctl add_user "$service_user" "$MQTT_PASSWORD"
rabbitmqctl set_permissions -p / "$service_user" '.*' '.*' '.*'
rabbitmqctl add_user "$admin_user" "$RABBITMQ_MANAGEMENT_PASSWORD"
rabbitmqctl set_user_tags "$admin_user" administrator
rabbitmqctl set_permissions -p / "$admin_user" '.*' '.*' '.*'
