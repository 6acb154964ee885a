package broker

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestTopicMatch(t *testing.T) {
	topic := "/sys/pk/dk/thing/service/x"
	for filter, want := range map[string]bool{
		"/sys/pk/dk/#":                  true,
		"/sys/pk/dk/thing/service/+":    true,
		"/sys/pk/dk/thing/service/x":    true,
		"/sys/+/+/thing/service/x":      true,
		"#":                             true,
		"/sys/pk/dk/thing/service":      false,
		"/sys/pk/other/#":               false,
		"/sys/pk/dk/thing/service/x/y":  false,
		"/sys/pk/dk/thing/measurepoint": false,
	} {
		require.Equal(t, want, topicMatch(filter, topic), filter)
	}
}
