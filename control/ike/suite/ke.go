package suite

import (
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
)

// modp2048 is the 2048-bit MODP group of RFC 3526 section 3 (generator 2),
// Diffie-Hellman group 14.
var modp2048 = func() *big.Int {
	p, ok := new(big.Int).SetString(
		"FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD1"+
			"29024E088A67CC74020BBEA63B139B22514A08798E3404DD"+
			"EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245"+
			"E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"+
			"EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3D"+
			"C2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F"+
			"83655D23DCA3AD961C62F356208552BB9ED529077096966D"+
			"670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"+
			"E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9"+
			"DE2BCBF6955817183995497CEA956AE515D2261898FA0510"+
			"15728E5A8AACAA68FFFFFFFFFFFFFFFF", 16)
	if !ok {
		panic("suite: bad MODP-2048 prime")
	}
	return p
}()

// modpExponentBytes is the length of a MODP private exponent: 512 bits,
// well above the 2x security strength RFC 3526 section 8 asks of
// short exponents for the 2048-bit group (about 112 bits of strength).
const modpExponentBytes = 64

// GroupSupported reports whether NewKeyExchange implements g.
func GroupSupported(g GroupID) bool {
	switch g {
	case GroupMODP2048, GroupECP256, GroupECP384, GroupECP521, GroupCurve25519:
		return true
	}
	return false
}

// PublicKeyLen is the length of the Key Exchange Data of a KE payload for
// g (RFC 7296 section 3.4, RFC 5903 section 7, RFC 8031 section 3), 0 for
// an unsupported group.
func PublicKeyLen(g GroupID) int {
	switch g {
	case GroupMODP2048:
		return 256
	case GroupECP256:
		return 64
	case GroupECP384:
		return 96
	case GroupECP521:
		return 132
	case GroupCurve25519:
		return 32
	}
	return 0
}

func ecdhCurve(g GroupID) ecdh.Curve {
	switch g {
	case GroupECP256:
		return ecdh.P256()
	case GroupECP384:
		return ecdh.P384()
	case GroupECP521:
		return ecdh.P521()
	case GroupCurve25519:
		return ecdh.X25519()
	}
	return nil
}

// KeyExchange is our half of one Diffie-Hellman exchange: a private key of
// a group and its public value, as sent in a KE payload. Use it once.
type KeyExchange struct {
	group GroupID
	ec    *ecdh.PrivateKey
	x     *big.Int // MODP private exponent
	pub   []byte
}

// NewKeyExchange generates a fresh private key for g.
func NewKeyExchange(g GroupID) (*KeyExchange, error) {
	if g == GroupMODP2048 {
		priv := make([]byte, modpExponentBytes)
		rand.Read(priv)
		return NewKeyExchangeFromPrivate(g, priv)
	}
	c := ecdhCurve(g)
	if c == nil {
		return nil, fmt.Errorf("suite: key exchange %s not supported", g)
	}
	k, err := c.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("suite: %s: %w", g, err)
	}
	return fromECDH(g, k), nil
}

// NewKeyExchangeFromPrivate builds a KeyExchange from a given private key:
// the scalar for the ECP groups and Curve25519 (in crypto/ecdh's encoding),
// the big-endian exponent for MODP. It exists for known-answer tests and
// deterministic simulations; real exchanges use NewKeyExchange.
func NewKeyExchangeFromPrivate(g GroupID, priv []byte) (*KeyExchange, error) {
	if g == GroupMODP2048 {
		x := new(big.Int).SetBytes(priv)
		if x.Cmp(big.NewInt(1)) <= 0 || x.Cmp(modp2048) >= 0 {
			return nil, fmt.Errorf("suite: %s: private exponent out of range", g)
		}
		y := new(big.Int).Exp(big.NewInt(2), x, modp2048)
		return &KeyExchange{group: g, x: x, pub: y.FillBytes(make([]byte, 256))}, nil
	}
	c := ecdhCurve(g)
	if c == nil {
		return nil, fmt.Errorf("suite: key exchange %s not supported", g)
	}
	k, err := c.NewPrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("suite: %s: %w", g, err)
	}
	return fromECDH(g, k), nil
}

func fromECDH(g GroupID, k *ecdh.PrivateKey) *KeyExchange {
	pub := k.PublicKey().Bytes()
	if g != GroupCurve25519 {
		pub = pub[1:] // RFC 5903: x | y, without SEC1's 0x04 prefix
	}
	return &KeyExchange{group: g, ec: k, pub: pub}
}

// Group is the key exchange method.
func (k *KeyExchange) Group() GroupID { return k.group }

// PrivateKey returns the private key in the form NewKeyExchangeFromPrivate
// takes, so that an exchange in flight survives a restart of iked (its
// state file holds the IKE SA's keys already).
func (k *KeyExchange) PrivateKey() []byte {
	if k.x != nil {
		return k.x.Bytes()
	}
	return k.ec.Bytes()
}

// PublicKey is the Key Exchange Data to send in our KE payload.
func (k *KeyExchange) PublicKey() []byte { return k.pub }

// CheckPeerKE checks a peer's Key Exchange Data for g without any
// Diffie-Hellman: its length, a MODP value inside 2..p-2, an ECP point on
// the curve. A responder runs it before it makes its own key pair, so that
// a request with bad KE data costs a comparison, not an exponentiation.
func CheckPeerKE(g GroupID, peer []byte) error {
	if want := PublicKeyLen(g); want == 0 {
		return fmt.Errorf("suite: key exchange %s not supported", g)
	} else if len(peer) != want {
		return fmt.Errorf("suite: %s: peer's key exchange data of %d bytes, want %d", g, len(peer), want)
	}
	switch g {
	case GroupMODP2048:
		y := new(big.Int).SetBytes(peer)
		if y.Cmp(big.NewInt(2)) < 0 || y.Cmp(modp2048Minus2) > 0 {
			return fmt.Errorf("suite: %s: peer's public value outside 2..p-2", g)
		}
	case GroupCurve25519:
		// Any 32 bytes are a u-coordinate; low-order points show as an
		// all-zero secret, which SharedSecret refuses.
	default:
		if _, err := ecdhCurve(g).NewPublicKey(sec1(peer)); err != nil {
			return fmt.Errorf("suite: %s: peer's public value is not a point on the curve", g)
		}
	}
	return nil
}

// sec1 is an ECP public value of a KE payload (x | y, RFC 5903) in the
// uncompressed SEC 1 form crypto/ecdh reads.
func sec1(peer []byte) []byte {
	raw := make([]byte, 1+len(peer))
	raw[0] = 4
	copy(raw[1:], peer)
	return raw
}

var modp2048Minus2 = new(big.Int).Sub(modp2048, big.NewInt(2))

// SharedSecret checks the peer's Key Exchange Data (CheckPeerKE) and
// returns g^ir: the x coordinate for the ECP groups (RFC 5903 section 7),
// the X25519 output for Curve25519 (RFC 8031), the value padded to the
// modulus length for MODP (RFC 7296 section 2.14). It also rejects a
// Curve25519 result of all zeros (a low-order point).
func (k *KeyExchange) SharedSecret(peer []byte) ([]byte, error) {
	if err := CheckPeerKE(k.group, peer); err != nil {
		return nil, err
	}
	if k.x != nil {
		s := new(big.Int).Exp(new(big.Int).SetBytes(peer), k.x, modp2048)
		return s.FillBytes(make([]byte, 256)), nil
	}
	raw := peer
	if k.group != GroupCurve25519 {
		raw = sec1(peer)
	}
	pk, err := k.ec.Curve().NewPublicKey(raw)
	if err != nil {
		return nil, fmt.Errorf("suite: %s: peer's public value is not a point on the curve", k.group)
	}
	s, err := k.ec.ECDH(pk)
	if err != nil {
		if k.group == GroupCurve25519 {
			return nil, errors.New("suite: CURVE_25519: shared secret is all zeros (low-order peer point)")
		}
		return nil, fmt.Errorf("suite: %s: %w", k.group, err)
	}
	return s, nil
}
