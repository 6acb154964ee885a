// Package api holds Gale's wire contracts: MQTT topics of the EnOS-compatible
// device protocol, request and reply payloads, reply codes, connect signing,
// Kafka topic names and the binary telemetry record carried on Kafka.
// It imports nothing of the project, so every other package may import it.
package api
