package message

import (
	"fmt"
	"strings"
)

// Rule says how often a payload type may appear in one kind of message and
// whether it must be inside SK. Types without a rule are not allowed;
// *Unknown payloads (non-critical, not understood) are always allowed.
type Rule struct {
	Type      PayloadType
	Min, Max  int
	Encrypted bool
}

// Rules is the rule set of one kind of message.
type Rules struct {
	// Encrypted says the message must carry SK (or SKF), even with no
	// inner payload.
	Encrypted bool
	Payloads  []Rule
	// Together lists payload types that must all appear or all be absent
	// (SA, TSi, TSr of a Child SA; SA, KE, Nonce of a successful
	// IKE_SA_INIT response).
	Together [][]PayloadType
	// NotifyOnly allows a message of only Notify (and Vendor ID)
	// payloads in place of the required ones: an error response
	// (NO_PROPOSAL_CHOSEN, INVALID_KE_PAYLOAD, COOKIE...).
	NotifyOnly bool
}

const many = MaxPayloads

type exchangeKey struct {
	ex       ExchangeType
	response bool
}

// exchangeRules follows RFC 7296 section 1 (1.2 to 1.5, 2.6, 2.7, 1.3.2,
// 1.3.3) with the extensions strongSwan uses in these exchanges: any number
// of N and V anywhere, CERT/CERTREQ/CP/EAP in IKE_AUTH, CP in
// INFORMATIONAL.
var exchangeRules = map[exchangeKey]Rules{
	// HDR, SA, KEi, Ni, [N+], [V+] (and a leading N(COOKIE) when retried)
	{IKESAInit, false}: {
		Payloads: []Rule{
			{PayloadSA, 1, 1, false}, {PayloadKE, 1, 1, false}, {PayloadNonce, 1, 1, false},
			{PayloadNotify, 0, many, false}, {PayloadVendorID, 0, many, false},
		},
	},
	// HDR, SA, KEr, Nr, [CERTREQ], [N+], [V+]; or HDR, N (COOKIE,
	// INVALID_KE_PAYLOAD, NO_PROPOSAL_CHOSEN...)
	{IKESAInit, true}: {
		Payloads: []Rule{
			{PayloadSA, 1, 1, false}, {PayloadKE, 1, 1, false}, {PayloadNonce, 1, 1, false},
			{PayloadCERTREQ, 0, many, false}, {PayloadNotify, 0, many, false}, {PayloadVendorID, 0, many, false},
		},
		NotifyOnly: true,
	},
	// HDR, SK {IDi, [CERT+], [N(INITIAL_CONTACT)], [[N(HTTP_CERT_LOOKUP_SUPPORTED)],
	// CERTREQ+], [IDr], AUTH, [CP(CFG_REQUEST)], [N(IPCOMP_SUPPORTED)+],
	// [N(USE_TRANSPORT_MODE)], [N(ESP_TFC_PADDING_NOT_SUPPORTED)],
	// [N(NON_FIRST_FRAGMENTS_ALSO)], SA, TSi, TSr, [V+] [N+]}
	// IDi and AUTH are optional: later IKE_AUTH rounds of EAP carry only
	// EAP, the last one only AUTH; SA/TSi/TSr are absent for a childless
	// IKE SA (RFC 6023).
	{IKEAuth, false}: {
		Encrypted: true,
		Payloads: []Rule{
			{PayloadIDi, 0, 1, true}, {PayloadCERT, 0, many, true}, {PayloadCERTREQ, 0, many, true},
			{PayloadIDr, 0, 1, true}, {PayloadAUTH, 0, 1, true}, {PayloadEAP, 0, 1, true},
			{PayloadCP, 0, 1, true}, {PayloadSA, 0, 1, true}, {PayloadTSi, 0, 1, true}, {PayloadTSr, 0, 1, true},
			{PayloadNotify, 0, many, true}, {PayloadVendorID, 0, many, true},
		},
		Together: [][]PayloadType{{PayloadSA, PayloadTSi, PayloadTSr}},
	},
	// HDR, SK {IDr, [CERT+], AUTH, [CP(CFG_REPLY)], [N...], SA, TSi, TSr,
	// [N+], [V+]}; EAP rounds carry IDr/CERT/AUTH/EAP in turn; an error
	// (AUTHENTICATION_FAILED, TS_UNACCEPTABLE...) is notifies only.
	{IKEAuth, true}: {
		Encrypted: true,
		Payloads: []Rule{
			{PayloadIDr, 0, 1, true}, {PayloadCERT, 0, many, true}, {PayloadAUTH, 0, 1, true},
			{PayloadEAP, 0, 1, true}, {PayloadCP, 0, 1, true}, {PayloadSA, 0, 1, true},
			{PayloadTSi, 0, 1, true}, {PayloadTSr, 0, 1, true},
			{PayloadNotify, 0, many, true}, {PayloadVendorID, 0, many, true},
		},
		Together: [][]PayloadType{{PayloadSA, PayloadTSi, PayloadTSr}},
	},
	// Child SA: HDR, SK {[N(REKEY_SA)], [N+], SA, Ni, [KEi], TSi, TSr}
	// IKE SA rekey: HDR, SK {SA, Ni, KEi}
	{CreateChildSA, false}: {
		Encrypted: true,
		Payloads: []Rule{
			{PayloadSA, 1, 1, true}, {PayloadNonce, 1, 1, true}, {PayloadKE, 0, 1, true},
			{PayloadTSi, 0, 1, true}, {PayloadTSr, 0, 1, true},
			{PayloadNotify, 0, many, true}, {PayloadVendorID, 0, many, true},
		},
		Together: [][]PayloadType{{PayloadTSi, PayloadTSr}},
	},
	// HDR, SK {SA, Nr, [KEr], [TSi, TSr]} or an error notify.
	{CreateChildSA, true}: {
		Encrypted: true,
		Payloads: []Rule{
			{PayloadSA, 1, 1, true}, {PayloadNonce, 1, 1, true}, {PayloadKE, 0, 1, true},
			{PayloadTSi, 0, 1, true}, {PayloadTSr, 0, 1, true},
			{PayloadNotify, 0, many, true}, {PayloadVendorID, 0, many, true},
		},
		Together:   [][]PayloadType{{PayloadTSi, PayloadTSr}},
		NotifyOnly: true,
	},
	// HDR, SK {[N,] [D,] [CP,] ...}
	{Informational, false}: {
		Encrypted: true,
		Payloads: []Rule{
			{PayloadNotify, 0, many, true}, {PayloadDelete, 0, many, true}, {PayloadCP, 0, 1, true},
			{PayloadVendorID, 0, many, true},
		},
	},
	{Informational, true}: {
		Encrypted: true,
		Payloads: []Rule{
			{PayloadNotify, 0, many, true}, {PayloadDelete, 0, many, true}, {PayloadCP, 0, 1, true},
			{PayloadVendorID, 0, many, true},
		},
	},
}

// RulesFor returns the rules of a request or response of an exchange.
func RulesFor(ex ExchangeType, response bool) (Rules, bool) {
	r, ok := exchangeRules[exchangeKey{ex, response}]
	return r, ok
}

// Validate checks a message against the rules of its exchange: which
// payloads, how many, inside SK or not. Call it on a decoded message after
// Decrypt (or with Inner set from Reassemble). Errors name the exchange and
// the fault, e.g. "ike: IKE_SA_INIT request: 2 KE payloads, at most 1".
func Validate(m *Message) error {
	dir := "request"
	if m.Header.IsResponse() {
		dir = "response"
	}
	fail := func(format string, args ...any) error {
		return fmt.Errorf("ike: %s %s: %s", m.Header.Exchange, dir, fmt.Sprintf(format, args...))
	}
	r, ok := RulesFor(m.Header.Exchange, m.Header.IsResponse())
	if !ok {
		return fail("exchange type not supported")
	}
	if r.Encrypted && m.Encrypted == nil && m.Inner == nil {
		return fail("no SK payload")
	}
	if !r.Encrypted && (m.Encrypted != nil || len(m.Inner) != 0) {
		return fail("SK payload not allowed")
	}
	count := map[PayloadType]int{}
	check := func(ps []Payload, encrypted bool) error {
		for _, p := range ps {
			if _, unknown := p.(*Unknown); unknown {
				continue
			}
			t := p.Type()
			var rule *Rule
			for i := range r.Payloads {
				if r.Payloads[i].Type == t {
					rule = &r.Payloads[i]
				}
			}
			if rule == nil {
				return fail("%s payload not allowed", t)
			}
			if rule.Encrypted && !encrypted {
				return fail("%s payload outside SK", t)
			}
			if !rule.Encrypted && encrypted {
				return fail("%s payload inside SK", t)
			}
			count[t]++
		}
		return nil
	}
	if err := check(m.Payloads, false); err != nil {
		return err
	}
	if err := check(m.Inner, true); err != nil {
		return err
	}
	notifyOnly := r.NotifyOnly
	if notifyOnly {
		for t, n := range count {
			if n > 0 && t != PayloadNotify && t != PayloadVendorID {
				notifyOnly = false
			}
		}
		if notifyOnly && count[PayloadNotify] == 0 {
			notifyOnly = false
		}
	}
	for _, rule := range r.Payloads {
		n := count[rule.Type]
		if n > rule.Max {
			return fail("%d %s payloads, at most %d", n, rule.Type, rule.Max)
		}
		if n < rule.Min && !notifyOnly {
			return fail("%s payload missing", rule.Type)
		}
	}
	for _, group := range r.Together {
		var have, missing []string
		for _, t := range group {
			if count[t] > 0 {
				have = append(have, t.String())
			} else {
				missing = append(missing, t.String())
			}
		}
		if len(have) > 0 && len(missing) > 0 {
			return fail("%s without %s", strings.Join(have, ", "), strings.Join(missing, ", "))
		}
	}
	if m.Header.Exchange == IKESAInit && !m.Header.IsResponse() {
		// A COOKIE, when present, must be the first payload (RFC 7296 2.6).
		for i, p := range m.Payloads {
			if n, ok := p.(*Notify); ok && n.NotifyType == Cookie && i != 0 {
				return fail("N(COOKIE) is payload %d, must be the first", i+1)
			}
		}
	}
	return nil
}
