package message_test

import (
	"testing"

	"github.com/spugate/spugate/control/ike/message"
)

// initRequest encodes an IKE_SA_INIT request with the nonce given and, if
// cookie is not nil, a COOKIE first.
func initRequest(t *testing.T, spi uint64, nonce byte, cookie []byte) []byte {
	t.Helper()
	var ps []message.Payload
	if cookie != nil {
		ps = append(ps, &message.Notify{NotifyType: message.Cookie, Data: cookie})
	}
	ps = append(ps,
		&message.KE{Group: 31, Data: make([]byte, 32)},
		&message.Nonce{Data: []byte{nonce, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}},
		&message.Notify{NotifyType: message.NATDetectionSourceIP, Data: make([]byte, 20)})
	b, err := (&message.Message{Header: message.Header{SPIi: spi, Exchange: message.IKESAInit, Flags: message.FlagInitiator},
		Payloads: ps}).Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCookieRetryOf(t *testing.T) {
	first := initRequest(t, 0x1111, 1, nil)
	retry := initRequest(t, 0x1111, 1, []byte("cookie one"))
	again := initRequest(t, 0x1111, 1, []byte("cookie two, longer"))
	for _, c := range []struct {
		name         string
		retry, first []byte
		want         bool
	}{
		{"retry of the first", retry, first, true},
		{"retry of a retry, another COOKIE", again, retry, true},
		{"the same retry", retry, retry, true},
		{"no COOKIE", first, first, false},
		{"the first after a retry", first, retry, false},
		{"another nonce", initRequest(t, 0x1111, 9, []byte("cookie one")), first, false},
		{"another SPI", initRequest(t, 0x2222, 1, []byte("cookie one")), first, false},
		{"truncated retry", retry[:30], first, false},
		{"truncated first", retry, first[:20], false},
		{"nothing", nil, nil, false},
	} {
		if got := message.CookieRetryOf(c.retry, c.first); got != c.want {
			t.Errorf("%s: CookieRetryOf = %v, want %v", c.name, got, c.want)
		}
	}
}
