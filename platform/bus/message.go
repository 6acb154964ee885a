package bus

import (
	"context"
	"errors"
	"sync"

	"github.com/segmentio/kafka-go"
)

// Message is one record of a topic: producers set Topic, Key and Value;
// consumers also get where it was read from.
type Message struct {
	Topic string
	Key   []byte
	Value []byte
	// Partition and Offset locate a consumed message; producers leave them
	// zero (the key picks the partition).
	Partition int
	Offset    int64
	// HighWaterMark is the partition's end offset when the message was
	// fetched: a consumer whose Offset+1 is below it is behind.
	HighWaterMark int64
}

// Producer puts messages on Kafka. Both producers of this package are
// one: SyncProducer, which writes a call's messages in one request, and
// AsyncProducer, which queues them on lanes that batch across callers.
type Producer interface {
	// Produce writes msgs (each with its Topic set) and returns once Kafka
	// acknowledged them all (acks=all), or with the error.
	Produce(ctx context.Context, msgs ...Message) error
	// Send hands msg (its Topic set) over and calls done exactly once:
	// with nil once Kafka acknowledged it, or with the error. With the
	// AsyncProducer ctx bounds the queueing only and done runs on the
	// producer's goroutine, so it must not block; msg's bytes must stay
	// unchanged until done ran.
	Send(ctx context.Context, msg Message, done func(error))
}

var (
	_ Producer = (*SyncProducer)(nil)
	_ Producer = (*AsyncProducer)(nil)
)

// SendAll sends msgs with send and waits until every one is answered,
// returning their errors joined: Produce for a producer that sends.
func SendAll(ctx context.Context, send func(context.Context, Message, func(error)), msgs ...Message) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	wg.Add(len(msgs))
	for _, m := range msgs {
		send(ctx, m, func(err error) {
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
			wg.Done()
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// toKafka is what kafka-go's writer needs of m; the balancer picks the partition.
func (m *Message) toKafka() kafka.Message {
	return kafka.Message{Topic: m.Topic, Key: m.Key, Value: m.Value}
}

// fromKafka is a fetched message without the kafka-go fields nobody reads.
func fromKafka(m *kafka.Message) Message {
	return Message{Topic: m.Topic, Key: m.Key, Value: m.Value, Partition: m.Partition, Offset: m.Offset, HighWaterMark: m.HighWaterMark}
}
