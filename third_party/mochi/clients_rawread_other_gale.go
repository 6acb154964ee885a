//go:build !unix

// [gale fork] The whole file: without descriptor access, readIdle reads the first byte alone.

package mqtt

import (
	"errors"
	"syscall"
)

type rawSource struct{}

func (cl *Client) rawConn() syscall.RawConn { return nil }

func (cl *Client) readIdleRaw(syscall.RawConn) (byte, error) { return 0, errors.ErrUnsupported }
