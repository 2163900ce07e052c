package message

import "strconv"

// PayloadType is a Next Payload value (RFC 7296 section 3.2, RFC 7383).
type PayloadType uint8

// Payload types: IANA's "IKEv2 Payload Types" registry (RFC 7296 section
// 3.2), the ones this package decodes; SKF is RFC 7383's Encrypted Fragment.
const (
	PayloadNone     PayloadType = 0
	PayloadSA       PayloadType = 33
	PayloadKE       PayloadType = 34
	PayloadIDi      PayloadType = 35
	PayloadIDr      PayloadType = 36
	PayloadCERT     PayloadType = 37
	PayloadCERTREQ  PayloadType = 38
	PayloadAUTH     PayloadType = 39
	PayloadNonce    PayloadType = 40
	PayloadNotify   PayloadType = 41
	PayloadDelete   PayloadType = 42
	PayloadVendorID PayloadType = 43
	PayloadTSi      PayloadType = 44
	PayloadTSr      PayloadType = 45
	PayloadSK       PayloadType = 46
	PayloadCP       PayloadType = 47
	PayloadEAP      PayloadType = 48
	PayloadSKF      PayloadType = 53
)

var payloadNames = map[PayloadType]string{
	PayloadNone: "NONE", PayloadSA: "SA", PayloadKE: "KE", PayloadIDi: "IDi", PayloadIDr: "IDr",
	PayloadCERT: "CERT", PayloadCERTREQ: "CERTREQ", PayloadAUTH: "AUTH", PayloadNonce: "Nonce",
	PayloadNotify: "N", PayloadDelete: "D", PayloadVendorID: "V", PayloadTSi: "TSi", PayloadTSr: "TSr",
	PayloadSK: "SK", PayloadCP: "CP", PayloadEAP: "EAP", PayloadSKF: "SKF",
}

// String uses the notation of RFC 7296's exchange diagrams (N, D, V...),
// and "type n" for a payload type it does not name (an unknown payload a
// peer sent, which the logs and error texts show as such).
func (t PayloadType) String() string {
	if n, ok := payloadNames[t]; ok {
		return n
	}
	return "type " + strconv.Itoa(int(t))
}

// ExchangeType is the Exchange Type of the IKE header (RFC 7296 3.1).
type ExchangeType uint8

// Exchange types: IANA's "IKEv2 Exchange Types" registry (RFC 7296
// section 3.1 and the RFCs named).
const (
	IKESAInit        ExchangeType = 34
	IKEAuth          ExchangeType = 35
	CreateChildSA    ExchangeType = 36
	Informational    ExchangeType = 37
	IKESessionResume ExchangeType = 38 // RFC 5723
	IKEIntermediate  ExchangeType = 43 // RFC 9242
	IKEFollowupKE    ExchangeType = 44 // RFC 9370
)

var exchangeNames = map[ExchangeType]string{
	IKESAInit: "IKE_SA_INIT", IKEAuth: "IKE_AUTH", CreateChildSA: "CREATE_CHILD_SA",
	Informational: "INFORMATIONAL", IKESessionResume: "IKE_SESSION_RESUME",
	IKEIntermediate: "IKE_INTERMEDIATE", IKEFollowupKE: "IKE_FOLLOWUP_KE",
}

// String returns the RFC 7296 name (IKE_SA_INIT...), or EXCHANGE_n for an
// exchange type not named here, as in the "exchange type not supported"
// error.
func (e ExchangeType) String() string {
	if n, ok := exchangeNames[e]; ok {
		return n
	}
	return "EXCHANGE_" + strconv.Itoa(int(e))
}

// Flags of the IKE header.
type Flags uint8

// Header flags (RFC 7296 section 3.1).
const (
	FlagInitiator Flags = 0x08 // sent by the original initiator of the IKE SA
	FlagVersion   Flags = 0x10 // sender can speak a higher major version
	FlagResponse  Flags = 0x20 // message is a response
)

// NotifyType is the Notify Message Type of a Notify payload. Types below
// 16384 are errors, the others status (RFC 7296 section 3.10.1).
type NotifyType uint16

// Error notify types: IANA's "IKEv2 Notify Message Error Types" registry
// (RFC 7296 section 3.10.1 and the RFCs named).
const (
	UnsupportedCriticalPayload NotifyType = 1
	InvalidIKESPI              NotifyType = 4
	InvalidMajorVersion        NotifyType = 5
	InvalidSyntax              NotifyType = 7
	InvalidMessageID           NotifyType = 9
	InvalidSPI                 NotifyType = 11
	NoProposalChosen           NotifyType = 14
	InvalidKEPayload           NotifyType = 17
	AuthenticationFailed       NotifyType = 24
	SinglePairRequired         NotifyType = 34
	NoAdditionalSAs            NotifyType = 35
	InternalAddressFailure     NotifyType = 36
	FailedCPRequired           NotifyType = 37
	TSUnacceptable             NotifyType = 38
	InvalidSelectors           NotifyType = 39
	UnacceptableAddresses      NotifyType = 40 // RFC 4555
	UnexpectedNATDetected      NotifyType = 41 // RFC 4555
	UseAssignedHoA             NotifyType = 42 // RFC 5026
	TemporaryFailure           NotifyType = 43
	ChildSANotFound            NotifyType = 44
	InvalidGroupID             NotifyType = 45 // RFC 6407
	AuthorizationFailed        NotifyType = 46 // RFC 6407
	StateNotFound              NotifyType = 47 // RFC 9242
)

// Status notify types: IANA's "IKEv2 Notify Message Status Types" registry
// (RFC 7296 section 3.10.1 and the RFCs named).
const (
	InitialContact                  NotifyType = 16384
	SetWindowSize                   NotifyType = 16385
	AdditionalTSPossible            NotifyType = 16386
	IPCompSupported                 NotifyType = 16387
	NATDetectionSourceIP            NotifyType = 16388
	NATDetectionDestinationIP       NotifyType = 16389
	Cookie                          NotifyType = 16390
	UseTransportMode                NotifyType = 16391
	HTTPCertLookupSupported         NotifyType = 16392
	RekeySA                         NotifyType = 16393
	ESPTFCPaddingNotSupported       NotifyType = 16394
	NonFirstFragmentsAlso           NotifyType = 16395
	MOBIKESupported                 NotifyType = 16396 // RFC 4555
	AdditionalIP4Address            NotifyType = 16397 // RFC 4555
	AdditionalIP6Address            NotifyType = 16398 // RFC 4555
	NoAdditionalAddresses           NotifyType = 16399 // RFC 4555
	UpdateSAAddresses               NotifyType = 16400 // RFC 4555
	Cookie2                         NotifyType = 16401 // RFC 4555
	NoNATsAllowed                   NotifyType = 16402 // RFC 4555
	AuthLifetime                    NotifyType = 16403 // RFC 4478
	MultipleAuthSupported           NotifyType = 16404 // RFC 4739
	AnotherAuthFollows              NotifyType = 16405 // RFC 4739
	RedirectSupported               NotifyType = 16406 // RFC 5685
	Redirect                        NotifyType = 16407 // RFC 5685
	RedirectedFrom                  NotifyType = 16408 // RFC 5685
	TicketLTOpaque                  NotifyType = 16409 // RFC 5723
	TicketRequest                   NotifyType = 16410 // RFC 5723
	TicketAck                       NotifyType = 16411 // RFC 5723
	TicketNack                      NotifyType = 16412 // RFC 5723
	TicketOpaque                    NotifyType = 16413 // RFC 5723
	LinkID                          NotifyType = 16414 // RFC 5739
	UseWESPMode                     NotifyType = 16415 // RFC 5840
	ROHCSupported                   NotifyType = 16416 // RFC 5857
	EAPOnlyAuthentication           NotifyType = 16417 // RFC 5998
	ChildlessIKEv2Supported         NotifyType = 16418 // RFC 6023
	QuickCrashDetection             NotifyType = 16419 // RFC 6290
	IKEv2MessageIDSyncSupported     NotifyType = 16420 // RFC 6311
	IPsecReplayCounterSyncSupported NotifyType = 16421 // RFC 6311
	IKEv2MessageIDSync              NotifyType = 16422 // RFC 6311
	IPsecReplayCounterSync          NotifyType = 16423 // RFC 6311
	SecurePasswordMethods           NotifyType = 16424 // RFC 6467
	PSKPersist                      NotifyType = 16425 // RFC 6631
	PSKConfirm                      NotifyType = 16426 // RFC 6631
	ERXSupported                    NotifyType = 16427 // RFC 6867
	IFOMCapability                  NotifyType = 16428
	SenderRequestID                 NotifyType = 16429
	IKEv2FragmentationSupported     NotifyType = 16430 // RFC 7383
	SignatureHashAlgorithms         NotifyType = 16431 // RFC 7427
	CloneIKESASupported             NotifyType = 16432 // RFC 7791
	CloneIKESA                      NotifyType = 16433 // RFC 7791
	Puzzle                          NotifyType = 16434 // RFC 8019
	UsePPK                          NotifyType = 16435 // RFC 8784
	PPKIdentity                     NotifyType = 16436 // RFC 8784
	NoPPKAuth                       NotifyType = 16437 // RFC 8784
	IntermediateExchangeSupported   NotifyType = 16438 // RFC 9242
	IP4Allowed                      NotifyType = 16439 // RFC 8983
	IP6Allowed                      NotifyType = 16440 // RFC 8983
	AdditionalKeyExchange           NotifyType = 16441 // RFC 9370
	UseAggfrag                      NotifyType = 16442 // RFC 9347
)

var notifyNames = map[NotifyType]string{
	UnsupportedCriticalPayload: "UNSUPPORTED_CRITICAL_PAYLOAD", InvalidIKESPI: "INVALID_IKE_SPI",
	InvalidMajorVersion: "INVALID_MAJOR_VERSION", InvalidSyntax: "INVALID_SYNTAX",
	InvalidMessageID: "INVALID_MESSAGE_ID", InvalidSPI: "INVALID_SPI", NoProposalChosen: "NO_PROPOSAL_CHOSEN",
	InvalidKEPayload: "INVALID_KE_PAYLOAD", AuthenticationFailed: "AUTHENTICATION_FAILED",
	SinglePairRequired: "SINGLE_PAIR_REQUIRED", NoAdditionalSAs: "NO_ADDITIONAL_SAS",
	InternalAddressFailure: "INTERNAL_ADDRESS_FAILURE", FailedCPRequired: "FAILED_CP_REQUIRED",
	TSUnacceptable: "TS_UNACCEPTABLE", InvalidSelectors: "INVALID_SELECTORS",
	UnacceptableAddresses: "UNACCEPTABLE_ADDRESSES", UnexpectedNATDetected: "UNEXPECTED_NAT_DETECTED",
	UseAssignedHoA: "USE_ASSIGNED_HoA", TemporaryFailure: "TEMPORARY_FAILURE",
	ChildSANotFound: "CHILD_SA_NOT_FOUND", InvalidGroupID: "INVALID_GROUP_ID",
	AuthorizationFailed: "AUTHORIZATION_FAILED", StateNotFound: "STATE_NOT_FOUND",
	InitialContact: "INITIAL_CONTACT", SetWindowSize: "SET_WINDOW_SIZE",
	AdditionalTSPossible: "ADDITIONAL_TS_POSSIBLE", IPCompSupported: "IPCOMP_SUPPORTED",
	NATDetectionSourceIP: "NAT_DETECTION_SOURCE_IP", NATDetectionDestinationIP: "NAT_DETECTION_DESTINATION_IP",
	Cookie: "COOKIE", UseTransportMode: "USE_TRANSPORT_MODE", HTTPCertLookupSupported: "HTTP_CERT_LOOKUP_SUPPORTED",
	RekeySA: "REKEY_SA", ESPTFCPaddingNotSupported: "ESP_TFC_PADDING_NOT_SUPPORTED",
	NonFirstFragmentsAlso: "NON_FIRST_FRAGMENTS_ALSO", MOBIKESupported: "MOBIKE_SUPPORTED",
	AdditionalIP4Address: "ADDITIONAL_IP4_ADDRESS", AdditionalIP6Address: "ADDITIONAL_IP6_ADDRESS",
	NoAdditionalAddresses: "NO_ADDITIONAL_ADDRESSES", UpdateSAAddresses: "UPDATE_SA_ADDRESSES",
	Cookie2: "COOKIE2", NoNATsAllowed: "NO_NATS_ALLOWED", AuthLifetime: "AUTH_LIFETIME",
	MultipleAuthSupported: "MULTIPLE_AUTH_SUPPORTED", AnotherAuthFollows: "ANOTHER_AUTH_FOLLOWS",
	RedirectSupported: "REDIRECT_SUPPORTED", Redirect: "REDIRECT", RedirectedFrom: "REDIRECTED_FROM",
	TicketLTOpaque: "TICKET_LT_OPAQUE", TicketRequest: "TICKET_REQUEST", TicketAck: "TICKET_ACK",
	TicketNack: "TICKET_NACK", TicketOpaque: "TICKET_OPAQUE", LinkID: "LINK_ID", UseWESPMode: "USE_WESP_MODE",
	ROHCSupported: "ROHC_SUPPORTED", EAPOnlyAuthentication: "EAP_ONLY_AUTHENTICATION",
	ChildlessIKEv2Supported: "CHILDLESS_IKEV2_SUPPORTED", QuickCrashDetection: "QUICK_CRASH_DETECTION",
	IKEv2MessageIDSyncSupported:     "IKEV2_MESSAGE_ID_SYNC_SUPPORTED",
	IPsecReplayCounterSyncSupported: "IPSEC_REPLAY_COUNTER_SYNC_SUPPORTED",
	IKEv2MessageIDSync:              "IKEV2_MESSAGE_ID_SYNC", IPsecReplayCounterSync: "IPSEC_REPLAY_COUNTER_SYNC",
	SecurePasswordMethods: "SECURE_PASSWORD_METHODS", PSKPersist: "PSK_PERSIST", PSKConfirm: "PSK_CONFIRM",
	ERXSupported: "ERX_SUPPORTED", IFOMCapability: "IFOM_CAPABILITY", SenderRequestID: "SENDER_REQUEST_ID",
	IKEv2FragmentationSupported: "IKEV2_FRAGMENTATION_SUPPORTED", SignatureHashAlgorithms: "SIGNATURE_HASH_ALGORITHMS",
	CloneIKESASupported: "CLONE_IKE_SA_SUPPORTED", CloneIKESA: "CLONE_IKE_SA", Puzzle: "PUZZLE",
	UsePPK: "USE_PPK", PPKIdentity: "PPK_IDENTITY", NoPPKAuth: "NO_PPK_AUTH",
	IntermediateExchangeSupported: "INTERMEDIATE_EXCHANGE_SUPPORTED", IP4Allowed: "IP4_ALLOWED",
	IP6Allowed: "IP6_ALLOWED", AdditionalKeyExchange: "ADDITIONAL_KEY_EXCHANGE", UseAggfrag: "USE_AGGFRAG",
}

// String returns the IANA registry name (NO_PROPOSAL_CHOSEN...), the one
// strongSwan logs, or NOTIFY_n for a type not named here.
func (n NotifyType) String() string {
	if s, ok := notifyNames[n]; ok {
		return s
	}
	return "NOTIFY_" + strconv.Itoa(int(n))
}

// IsError reports whether n is an error type (below 16384).
func (n NotifyType) IsError() bool { return n < 16384 }

// IDType is the ID Type of an identification payload (RFC 7296 3.5).
type IDType uint8

// Identification types: IANA's "IKEv2 Identification Payload ID Types"
// registry (RFC 7296 section 3.5).
const (
	IDIPv4Addr   IDType = 1
	IDFQDN       IDType = 2
	IDRFC822Addr IDType = 3
	IDIPv6Addr   IDType = 5
	IDDERASN1DN  IDType = 9
	IDDERASN1GN  IDType = 10
	IDKeyID      IDType = 11
	IDFCName     IDType = 12 // RFC 4595
	IDNull       IDType = 13 // RFC 7619
)

var idNames = map[IDType]string{
	IDIPv4Addr: "ID_IPV4_ADDR", IDFQDN: "ID_FQDN", IDRFC822Addr: "ID_RFC822_ADDR", IDIPv6Addr: "ID_IPV6_ADDR",
	IDDERASN1DN: "ID_DER_ASN1_DN", IDDERASN1GN: "ID_DER_ASN1_GN", IDKeyID: "ID_KEY_ID",
	IDFCName: "ID_FC_NAME", IDNull: "ID_NULL",
}

// String returns the RFC 7296 name (ID_FQDN...), or ID_n for an
// unassigned type.
func (t IDType) String() string {
	if s, ok := idNames[t]; ok {
		return s
	}
	return "ID_" + strconv.Itoa(int(t))
}

// AuthMethod is the Auth Method of an AUTH payload (RFC 7296 3.8).
type AuthMethod uint8

// Authentication methods: IANA's "IKEv2 Authentication Method" registry
// (RFC 7296 section 3.8 and the RFCs named).
const (
	AuthRSASig           AuthMethod = 1
	AuthSharedKeyMIC     AuthMethod = 2
	AuthDSSSig           AuthMethod = 3
	AuthECDSA256         AuthMethod = 9  // RFC 4754
	AuthECDSA384         AuthMethod = 10 // RFC 4754
	AuthECDSA521         AuthMethod = 11 // RFC 4754
	AuthGSPAM            AuthMethod = 12 // RFC 6467
	AuthNull             AuthMethod = 13 // RFC 7619
	AuthDigitalSignature AuthMethod = 14 // RFC 7427
)

var authNames = map[AuthMethod]string{
	AuthRSASig: "RSA_SIG", AuthSharedKeyMIC: "SHARED_KEY_MIC", AuthDSSSig: "DSS_SIG",
	AuthECDSA256: "ECDSA_256", AuthECDSA384: "ECDSA_384", AuthECDSA521: "ECDSA_521", AuthGSPAM: "GSPAM",
	AuthNull: "NULL_AUTH", AuthDigitalSignature: "DIGITAL_SIGNATURE",
}

// String returns the registry name (RSA_SIG, DIGITAL_SIGNATURE...), or
// AUTH_n for a method not named here.
func (m AuthMethod) String() string {
	if s, ok := authNames[m]; ok {
		return s
	}
	return "AUTH_" + strconv.Itoa(int(m))
}

// CertEncoding is the Cert Encoding of CERT and CERTREQ (RFC 7296 3.6).
type CertEncoding uint8

// Certificate encodings: IANA's "IKEv2 Certificate Encodings" registry
// (RFC 7296 section 3.6). iked sends and uses X.509 Signature only.
const (
	CertPKCS7         CertEncoding = 1
	CertPGP           CertEncoding = 2
	CertDNSSignedKey  CertEncoding = 3
	CertX509Signature CertEncoding = 4
	CertKerberos      CertEncoding = 6
	CertCRL           CertEncoding = 7
	CertARL           CertEncoding = 8
	CertSPKI          CertEncoding = 9
	CertX509Attribute CertEncoding = 10
	CertRawRSAKey     CertEncoding = 11
	CertHashURLX509   CertEncoding = 12
	CertHashURLBundle CertEncoding = 13
	CertOCSPContent   CertEncoding = 14 // RFC 4806
	CertRawPublicKey  CertEncoding = 15 // RFC 7670
)

// CfgType is the CFG Type of a configuration payload (RFC 7296 3.15).
type CfgType uint8

// Configuration payload types: IANA's "IKEv2 Configuration Payload CFG
// Types" registry (RFC 7296 section 3.15).
const (
	CfgRequest CfgType = 1
	CfgReply   CfgType = 2
	CfgSet     CfgType = 3
	CfgAck     CfgType = 4
)

var cfgNames = map[CfgType]string{
	CfgRequest: "CFG_REQUEST", CfgReply: "CFG_REPLY", CfgSet: "CFG_SET", CfgAck: "CFG_ACK",
}

// String returns the RFC 7296 name of the CFG type, or CFG_n for an
// unassigned one.
func (c CfgType) String() string {
	if n, ok := cfgNames[c]; ok {
		return n
	}
	return "CFG_" + strconv.Itoa(int(c))
}

// CPAttrType is a configuration attribute type (RFC 7296 3.15.1).
type CPAttrType uint16

// Configuration attribute types: IANA's "IKEv2 Configuration Payload
// Attribute Types" registry (RFC 7296 section 3.15.1).
const (
	InternalIP4Address  CPAttrType = 1
	InternalIP4Netmask  CPAttrType = 2
	InternalIP4DNS      CPAttrType = 3
	InternalIP4NBNS     CPAttrType = 4
	InternalIP4DHCP     CPAttrType = 6
	ApplicationVersion  CPAttrType = 7
	InternalIP6Address  CPAttrType = 8
	InternalIP6DNS      CPAttrType = 10
	InternalIP6DHCP     CPAttrType = 12
	InternalIP4Subnet   CPAttrType = 13
	SupportedAttributes CPAttrType = 14
	InternalIP6Subnet   CPAttrType = 15
)

// TSType is the TS Type of a traffic selector (RFC 7296 3.13.1).
type TSType uint8

// Traffic selector types: IANA's "IKEv2 Traffic Selector Types" registry
// (RFC 7296 section 3.13.1); the address-range types are the only ones
// IKEv2 tunnels use.
const (
	TSIPv4AddrRange TSType = 7
	TSIPv6AddrRange TSType = 8
)
