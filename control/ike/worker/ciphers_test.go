package worker_test

import (
	"github.com/spugate/spugate/control/ike/sa"
	"github.com/spugate/spugate/control/ike/suite"
)

// sealer and opener are an IKE SA's SK ciphers, made again from its keys
// if it let them go (sa.IKESA.Ciphers): established and idle IKE SAs hold
// none. An IKE SA without keys is the test's mistake.
func sealer(ike *sa.IKESA) *suite.SKCipher {
	out, _, err := ike.Ciphers()
	if err != nil {
		panic(err)
	}
	return out
}

func opener(ike *sa.IKESA) *suite.SKCipher {
	_, in, err := ike.Ciphers()
	if err != nil {
		panic(err)
	}
	return in
}
