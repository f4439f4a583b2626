#!/usr/bin/env bash
# Fetches an Apache Kafka broker (KRaft mode: no ZooKeeper) as jars from the Maven repository
# that the machine's own Maven configuration names, and caches them outside the clone so that
# later runs (and CI reruns) skip the download. Java comes from the machine.
#
#   bash scripts/kafka.sh ensure        fetches the jars unless they are cached
#   bash scripts/kafka.sh classpath     prints the broker's class path (fetches nothing)
#
# Cache layout: ${SELDON_RIVER_CACHE:-$HOME/.cache/seldon-river}/tools/kafka-<version>/libs/*.jar.
# The fetch runs in a temporary directory next to its final place and is moved there in one
# rename, so an interrupted fetch never leaves a directory that looks finished.
set -euo pipefail

CACHE=${SELDON_RIVER_CACHE:-$HOME/.cache/seldon-river}
TOOLS=$CACHE/tools
KAFKA_VERSION=4.1.2
LOG4J_VERSION=2.24.3 # the broker logs through slf4j 1.7: log4j-slf4j-impl binds it to log4j 2
FINAL=$TOOLS/kafka-$KAFKA_VERSION

die() { echo "kafka.sh: $*" >&2; exit 1; }

fetch() {
  local out=$1
  command -v mvn >/dev/null || die "mvn not found on PATH (needed to fetch the broker's jars)"
  command -v java >/dev/null || die "java not found on PATH (the broker runs on the machine's Java, 17 or newer)"
  cat >"$out/pom.xml" <<POM
<project>
  <modelVersion>4.0.0</modelVersion>
  <groupId>seldon-river.local</groupId>
  <artifactId>kafka-broker</artifactId>
  <version>$KAFKA_VERSION</version>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>$LOG4J_VERSION</version>
    </dependency>
  </dependencies>
</project>
POM
  # Which repository (or mirror) serves the jars is Maven's own setting (~/.m2/settings.xml).
  (cd "$out" && mvn -q -B dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$out/libs") \
    || return 1
  ls "$out"/libs/kafka_2.13-"$KAFKA_VERSION".jar >/dev/null
}

ensure() {
  [ -f "$FINAL/libs/kafka_2.13-$KAFKA_VERSION.jar" ] && return
  mkdir -p "$TOOLS"
  # One fetcher at a time; a second caller waits and then finds the finished fetch.
  exec {lock}>"$TOOLS/.kafka.lock"
  flock "$lock"
  if [ -f "$FINAL/libs/kafka_2.13-$KAFKA_VERSION.jar" ]; then exec {lock}>&-; return; fi
  local tmp start=$SECONDS
  tmp=$(mktemp -d "$TOOLS/.kafka-$KAFKA_VERSION.XXXXXX")
  chmod 755 "$tmp"
  echo "kafka.sh: fetching Kafka $KAFKA_VERSION (cached in $FINAL)" >&2
  if ! fetch "$tmp"; then
    rm -rf "$tmp"
    die "fetching Kafka $KAFKA_VERSION failed"
  fi
  rm -rf "$FINAL" # only a directory without the jars can be here: a leftover, not a fetch
  mv -T "$tmp" "$FINAL"
  exec {lock}>&-
  echo "kafka.sh: fetched Kafka $KAFKA_VERSION in $((SECONDS - start)) s" >&2
}

case "${1:-}" in
  ensure) ensure ;;
  classpath) echo "$FINAL/libs/*" ;;
  *) die "usage: kafka.sh ensure | kafka.sh classpath" ;;
esac
