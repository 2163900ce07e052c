package suite

import (
	"fmt"
	"strconv"
)

// Protocol is the Protocol ID of a proposal, a notify or a delete payload
// (RFC 7296 section 3.3.1).
type Protocol uint8

// Protocol IDs: IANA's "IKEv2 Security Protocol Identifiers" registry.
const (
	ProtocolNone Protocol = 0
	ProtocolIKE  Protocol = 1
	ProtocolAH   Protocol = 2
	ProtocolESP  Protocol = 3
)

var protocolNames = map[Protocol]string{
	ProtocolNone: "NONE", ProtocolIKE: "IKE", ProtocolAH: "AH", ProtocolESP: "ESP",
}

// String returns the protocol's name as strongSwan logs it at the head of a
// proposal ("IKE:..."), or PROTO_n for a value the registry does not name.
func (p Protocol) String() string {
	if n, ok := protocolNames[p]; ok {
		return n
	}
	return "PROTO_" + strconv.Itoa(int(p))
}

// TransformType is the Transform Type of a transform substructure
// (RFC 7296 section 3.3.2).
type TransformType uint8

// Transform types: IANA's "Transform Type Values" registry (RFC 7296
// section 3.3.2).
const (
	TransformEncr  TransformType = 1 // encryption algorithm (ENCR)
	TransformPRF   TransformType = 2 // pseudorandom function (PRF)
	TransformInteg TransformType = 3 // integrity algorithm (INTEG)
	TransformKE    TransformType = 4 // Diffie-Hellman group / key exchange method (D-H)
	TransformESN   TransformType = 5 // extended sequence numbers (ESN)
)

var transformTypeNames = map[TransformType]string{
	TransformEncr: "ENCR", TransformPRF: "PRF", TransformInteg: "INTEG", TransformKE: "KE", TransformESN: "ESN",
}

// String returns the abbreviation RFC 7296 section 3.3.2 uses for the type,
// or TRANSFORM_n for an unassigned one (Transform.String then prints such a
// transform as TRANSFORM_n_id).
func (t TransformType) String() string {
	if n, ok := transformTypeNames[t]; ok {
		return n
	}
	return "TRANSFORM_" + strconv.Itoa(int(t))
}

// EncrID identifies an encryption algorithm (Transform Type 1).
type EncrID uint16

// Encryption algorithm IDs from the IANA IKEv2 registry. Only AES-CBC,
// AES-GCM-16 and ChaCha20-Poly1305 are implemented; the others are named so
// that a peer's proposals can be logged and declined.
const (
	EncrDES              EncrID = 2
	Encr3DES             EncrID = 3
	EncrCAST             EncrID = 6
	EncrBlowfish         EncrID = 7
	EncrNull             EncrID = 11
	EncrAESCBC           EncrID = 12
	EncrAESCTR           EncrID = 13
	EncrAESCCM8          EncrID = 14
	EncrAESCCM12         EncrID = 15
	EncrAESCCM16         EncrID = 16
	EncrAESGCM8          EncrID = 18
	EncrAESGCM12         EncrID = 19
	EncrAESGCM16         EncrID = 20
	EncrNullAuthAESGMAC  EncrID = 21
	EncrCamelliaCBC      EncrID = 23
	EncrCamelliaCTR      EncrID = 24
	EncrCamelliaCCM8     EncrID = 25
	EncrCamelliaCCM12    EncrID = 26
	EncrCamelliaCCM16    EncrID = 27
	EncrChaCha20Poly1305 EncrID = 28
)

var encrNames = map[EncrID]string{
	EncrDES: "DES_CBC", Encr3DES: "3DES_CBC", EncrCAST: "CAST_CBC", EncrBlowfish: "BLOWFISH_CBC",
	EncrNull: "NULL", EncrAESCBC: "AES_CBC", EncrAESCTR: "AES_CTR",
	EncrAESCCM8: "AES_CCM_8", EncrAESCCM12: "AES_CCM_12", EncrAESCCM16: "AES_CCM_16",
	EncrAESGCM8: "AES_GCM_8", EncrAESGCM12: "AES_GCM_12", EncrAESGCM16: "AES_GCM_16",
	EncrNullAuthAESGMAC: "NULL_AES_GMAC", EncrCamelliaCBC: "CAMELLIA_CBC", EncrCamelliaCTR: "CAMELLIA_CTR",
	EncrCamelliaCCM8: "CAMELLIA_CCM_8", EncrCamelliaCCM12: "CAMELLIA_CCM_12", EncrCamelliaCCM16: "CAMELLIA_CCM_16",
	EncrChaCha20Poly1305: "CHACHA20_POLY1305",
}

// String returns the algorithm's name as strongSwan logs it (without the
// key length, which Transform.String appends), or ENCR_n for an ID not named
// here, so that a peer's unknown proposals still log what it sent.
func (e EncrID) String() string {
	if n, ok := encrNames[e]; ok {
		return n
	}
	return "ENCR_" + strconv.Itoa(int(e))
}

// IsAEAD reports whether e is a combined-mode algorithm, which needs no
// integrity transform.
func (e EncrID) IsAEAD() bool {
	switch e {
	case EncrAESCCM8, EncrAESCCM12, EncrAESCCM16, EncrAESGCM8, EncrAESGCM12, EncrAESGCM16,
		EncrNullAuthAESGMAC, EncrCamelliaCCM8, EncrCamelliaCCM12, EncrCamelliaCCM16,
		EncrChaCha20Poly1305:
		return true
	}
	return false
}

// PRFID identifies a pseudorandom function (Transform Type 2).
type PRFID uint16

// PRF IDs. HMAC-SHA1 and HMAC-SHA2 are implemented.
const (
	PRFHMACMD5     PRFID = 1
	PRFHMACSHA1    PRFID = 2
	PRFHMACTiger   PRFID = 3
	PRFAES128XCBC  PRFID = 4
	PRFHMACSHA256  PRFID = 5
	PRFHMACSHA384  PRFID = 6
	PRFHMACSHA512  PRFID = 7
	PRFAES128CMAC  PRFID = 8
	PRFCamellia128 PRFID = 9
)

var prfNames = map[PRFID]string{
	PRFHMACMD5: "PRF_HMAC_MD5", PRFHMACSHA1: "PRF_HMAC_SHA1", PRFHMACTiger: "PRF_HMAC_TIGER",
	PRFAES128XCBC: "PRF_AES128_XCBC", PRFHMACSHA256: "PRF_HMAC_SHA2_256", PRFHMACSHA384: "PRF_HMAC_SHA2_384",
	PRFHMACSHA512: "PRF_HMAC_SHA2_512", PRFAES128CMAC: "PRF_AES128_CMAC", PRFCamellia128: "PRF_CAMELLIA128_XCBC",
}

// String returns the PRF's name as strongSwan logs it, or PRF_n for an ID
// not named here.
func (p PRFID) String() string {
	if n, ok := prfNames[p]; ok {
		return n
	}
	return "PRF_" + strconv.Itoa(int(p))
}

// IntegID identifies an integrity algorithm (Transform Type 3).
type IntegID uint16

// Integrity algorithm IDs. HMAC-SHA1-96 and the HMAC-SHA2 truncations of
// RFC 4868 are implemented.
const (
	IntegNone          IntegID = 0
	IntegHMACMD596     IntegID = 1
	IntegHMACSHA196    IntegID = 2
	IntegDESMAC        IntegID = 3
	IntegKPDKMD5       IntegID = 4
	IntegAESXCBC96     IntegID = 5
	IntegHMACMD5128    IntegID = 6
	IntegHMACSHA1160   IntegID = 7
	IntegAESCMAC96     IntegID = 8
	IntegAES128GMAC    IntegID = 9
	IntegAES192GMAC    IntegID = 10
	IntegAES256GMAC    IntegID = 11
	IntegHMACSHA256128 IntegID = 12
	IntegHMACSHA384192 IntegID = 13
	IntegHMACSHA512256 IntegID = 14
)

var integNames = map[IntegID]string{
	IntegNone: "NONE", IntegHMACMD596: "HMAC_MD5_96", IntegHMACSHA196: "HMAC_SHA1_96", IntegDESMAC: "DES_MAC",
	IntegKPDKMD5: "KPDK_MD5", IntegAESXCBC96: "AES_XCBC_96", IntegHMACMD5128: "HMAC_MD5_128",
	IntegHMACSHA1160: "HMAC_SHA1_160", IntegAESCMAC96: "AES_CMAC_96", IntegAES128GMAC: "AES_128_GMAC",
	IntegAES192GMAC: "AES_192_GMAC", IntegAES256GMAC: "AES_256_GMAC", IntegHMACSHA256128: "HMAC_SHA2_256_128",
	IntegHMACSHA384192: "HMAC_SHA2_384_192", IntegHMACSHA512256: "HMAC_SHA2_512_256",
}

// String returns the integrity algorithm's name as strongSwan logs it, or
// INTEG_n for an ID not named here.
func (i IntegID) String() string {
	if n, ok := integNames[i]; ok {
		return n
	}
	return "INTEG_" + strconv.Itoa(int(i))
}

// GroupID identifies a Diffie-Hellman group / key exchange method
// (Transform Type 4).
type GroupID uint16

// Group IDs. 14, 19, 20, 21 and 31 are implemented.
const (
	GroupNone       GroupID = 0
	GroupMODP768    GroupID = 1
	GroupMODP1024   GroupID = 2
	GroupMODP1536   GroupID = 5
	GroupMODP2048   GroupID = 14
	GroupMODP3072   GroupID = 15
	GroupMODP4096   GroupID = 16
	GroupMODP6144   GroupID = 17
	GroupMODP8192   GroupID = 18
	GroupECP256     GroupID = 19
	GroupECP384     GroupID = 20
	GroupECP521     GroupID = 21
	GroupMODP1024S1 GroupID = 22
	GroupMODP2048S2 GroupID = 23
	GroupMODP2048S3 GroupID = 24
	GroupECP192     GroupID = 25
	GroupECP224     GroupID = 26
	GroupBP224      GroupID = 27
	GroupBP256      GroupID = 28
	GroupBP384      GroupID = 29
	GroupBP512      GroupID = 30
	GroupCurve25519 GroupID = 31
	GroupCurve448   GroupID = 32
)

var groupNames = map[GroupID]string{
	GroupNone: "NONE", GroupMODP768: "MODP_768", GroupMODP1024: "MODP_1024", GroupMODP1536: "MODP_1536",
	GroupMODP2048: "MODP_2048", GroupMODP3072: "MODP_3072", GroupMODP4096: "MODP_4096",
	GroupMODP6144: "MODP_6144", GroupMODP8192: "MODP_8192", GroupECP256: "ECP_256", GroupECP384: "ECP_384",
	GroupECP521: "ECP_521", GroupMODP1024S1: "MODP_1024_160", GroupMODP2048S2: "MODP_2048_224",
	GroupMODP2048S3: "MODP_2048_256", GroupECP192: "ECP_192", GroupECP224: "ECP_224", GroupBP224: "ECP_224_BP",
	GroupBP256: "ECP_256_BP", GroupBP384: "ECP_384_BP", GroupBP512: "ECP_512_BP",
	GroupCurve25519: "CURVE_25519", GroupCurve448: "CURVE_448",
}

// String returns the group's name as strongSwan logs it (ECP_256,
// CURVE_25519...), or KE_n for an ID not named here.
func (g GroupID) String() string {
	if n, ok := groupNames[g]; ok {
		return n
	}
	return "KE_" + strconv.Itoa(int(g))
}

// ESNID is the value of an Extended Sequence Numbers transform (Type 5).
type ESNID uint16

// ESN transform IDs (RFC 7296 section 3.3.2): whether the Child SA uses
// 64-bit extended sequence numbers (RFC 4303 section 2.2.1).
const (
	ESNNo  ESNID = 0
	ESNYes ESNID = 1
)

var esnNames = map[ESNID]string{ESNNo: "NO_EXT_SEQ", ESNYes: "EXT_SEQ"}

// String returns strongSwan's name for the ESN transform, or ESN_n for a
// value other than 0 and 1.
func (e ESNID) String() string {
	if n, ok := esnNames[e]; ok {
		return n
	}
	return "ESN_" + strconv.Itoa(int(e))
}

// AttrKeyLength is the Key Length transform attribute (RFC 7296 section
// 3.3.5), the only attribute IKEv2 defines; it is always in TV format.
const AttrKeyLength uint16 = 14

// Attribute is a transform attribute other than Key Length, kept so that a
// decoded transform encodes back unchanged and so that selection can refuse
// transforms carrying attributes it does not understand (RFC 7296 3.3.6).
type Attribute struct {
	Type  uint16 // without the AF bit
	TV    bool   // encoded in the short Type/Value format
	Value []byte // two bytes for TV
}

// Transform is one transform substructure.
type Transform struct {
	Type TransformType
	ID   uint16
	// KeyLength is the Key Length attribute in bits, 0 when absent.
	KeyLength uint16
	// Attributes holds any other attribute (there are none in RFC 7296).
	Attributes []Attribute
}

// String names the transform the way strongSwan logs it, e.g.
// AES_GCM_16_256 or PRF_HMAC_SHA2_256.
func (t Transform) String() string {
	var n string
	switch t.Type {
	case TransformEncr:
		n = EncrID(t.ID).String()
	case TransformPRF:
		n = PRFID(t.ID).String()
	case TransformInteg:
		n = IntegID(t.ID).String()
	case TransformKE:
		n = GroupID(t.ID).String()
	case TransformESN:
		n = ESNID(t.ID).String()
	default:
		n = fmt.Sprintf("%s_%d", t.Type, t.ID)
	}
	if t.KeyLength != 0 {
		n += "_" + strconv.Itoa(int(t.KeyLength))
	}
	return n
}

// same reports whether two transforms are the same algorithm with the same
// key length (attributes other than Key Length never match, see Select).
func (t Transform) same(o Transform) bool {
	return t.Type == o.Type && t.ID == o.ID && t.KeyLength == o.KeyLength
}
