#!/bin/bash
# The upstream image's configuration by environment: KAFKA_FOO_BAR=v → foo.bar=v.
set -euo pipefail
props=/opt/kafka/config/server.properties
: >"$props"
while IFS='=' read -r name value; do
  case "$name" in
    KAFKA_HEAP_OPTS|KAFKA_OPTS|KAFKA_JVM_PERFORMANCE_OPTS|KAFKA_LOG4J_OPTS|KAFKA_TOOL_OPTS) continue ;;
    KAFKA_*) ;;
    *) continue ;;
  esac
  key="${name#KAFKA_}"
  key="${key,,}"; key="${key//___/-}"; key="${key//__/@}"; key="${key//_/.}"; key="${key//@/_}"
  printf '%s=%s\n' "$key" "${!name}" >>"$props"
done < <(env | grep -o '^KAFKA_[A-Z0-9_]*=' | tr -d '=' | sed 's/$/=/')
grep -q '^log.dirs=' "$props" || echo "log.dirs=/var/lib/kafka/data" >>"$props"
dir="$(sed -n 's/^log.dirs=//p' "$props" | cut -d, -f1)"
cp /opt/kafka/config/log4j2.properties /opt/kafka/config/log4j2-tools.properties
sed -i 's/^rootLogger.level = INFO/rootLogger.level = WARN/' /opt/kafka/config/log4j2-tools.properties
if [[ ! -f "$dir/meta.properties" ]]; then
  id="${CLUSTER_ID:-$(head -c16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=' | sed 's/^-/A/')}"
  java -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
    -Dlog4j2.configurationFile=/opt/kafka/config/log4j2-tools.properties -cp '/opt/kafka/libs/*' \
    kafka.tools.StorageTool format --ignore-formatted --cluster-id "$id" --config "$props"
fi
echo "server.properties:"; sed 's/^/  /' "$props"
# shellcheck disable=SC2086
exec java ${KAFKA_HEAP_OPTS:--Xmx512m -Xms256m} -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
  -Djava.awt.headless=true ${KAFKA_OPTS:-} \
  -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties \
  -cp '/opt/kafka/libs/*' kafka.Kafka "$props"
