// Package hostile holds the hostile-client suite (its tests): while good
// devices stream under loadgen with its loss ledger, hostile clients try
// every attack the threat model of docs/security.md names — half-open and
// slow connections, oversize and truncated packets, brute-forced and
// replayed logins, stolen sessions, Wills and retained messages on other
// devices' topics, wildcard subscriptions, forged command replies, cross-org
// sub-devices, expensive and malformed queries, slow HTTP clients, forged
// registry records on Kafka. The suite then checks that every acknowledged
// good sample was stored, every attack was refused and counted by reason in
// the node's metrics, and that goroutines and memory came back near where
// they started.
package hostile
