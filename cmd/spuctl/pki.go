package main

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/spugate/spugate/control/pki"
	"github.com/spugate/spugate/control/pki/labca"
)

// The pki subcommand makes a lab CA and gateway certificates with
// control/pki/labca, and can lay them out in iked's swanctl-like folders:
//
//	spuctl pki ca DIR [--key ecdsa-p256] [--subject DN] [--days 3650] [--parent CADIR]
//	spuctl pki issue CADIR --id gw-a.example [--san ID]... [--key ecdsa-p256] [--days 365]
//	       [--subject DN] [--name NAME] [--install CONFDIR]
//
// A CA directory holds ca.pem (0644), ca.key (0600) and, for an
// intermediate (--parent), chain.pem: the CA and the CAs above it. issue
// writes NAME.pem and NAME.key next to the CA; --install also writes
// CONFDIR/x509/NAME.pem (the certificate and the intermediates above it),
// CONFDIR/private/NAME.key (0600) and CONFDIR/x509ca/<root>.pem, which is
// where iked's configuration looks by default. These are lab certificates:
// keys are made in memory and nothing keeps an issuance log.

const chainFile = "chain.pem"

func (a *app) pkiCommand() *cobra.Command {
	pkiCmd := &cobra.Command{
		Use:   "pki",
		Short: "Make a lab CA and gateway certificates for iked",
		Long: `Make a lab CA (a root, or an intermediate under one) and gateway
certificates, and lay them out in iked's configuration folders (x509/,
private/, x509ca/). These are lab certificates: keys are made in memory
and nothing keeps an issuance log. No daemon is needed.`,
		Example: `  spuctl pki ca /etc/spugate/ca/root --key ecdsa-p384
  spuctl pki ca /etc/spugate/ca/intermediate --parent /etc/spugate/ca/root
  spuctl pki issue /etc/spugate/ca/intermediate --id gw-a.example --san 198.18.0.1 --install /etc/spugate`,
	}
	pkiCmd.AddCommand(a.pkiCACommand(), a.pkiIssueCommand())
	return pkiCmd
}

func keyType(s string) (labca.KeyType, error) {
	for _, k := range labca.KeyTypes {
		if string(k) == s {
			return k, nil
		}
	}
	return "", usagef("key type %q: want one of %s", s, keyTypeNames())
}

func (a *app) pkiCACommand() *cobra.Command {
	var o caOptions
	cmd := &cobra.Command{
		Use:   "ca DIR",
		Short: "Make a CA in DIR: a self-signed root, or an intermediate (--parent)",
		Long: `Make a CA in DIR: ca.pem (0644) and ca.key (0600), self-signed, or issued by
the CA in --parent (an intermediate, with chain.pem: it and the CAs above
it).`,
		Example: `  spuctl pki ca /etc/spugate/ca/root --key ecdsa-p384
  spuctl pki ca /etc/spugate/ca/intermediate --parent /etc/spugate/ca/root`,
		Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error { return pkiCA(args[0], o, a.out) },
	}
	f := cmd.Flags()
	f.StringVar(&o.key, "key", string(labca.ECDSAP256), "key type: "+keyTypeNames())
	f.StringVar(&o.subject, "subject", "", "subject DN (default C=CH, O=spugate lab, CN=spugate lab root CA, or ... intermediate CA with --parent)")
	f.IntVar(&o.days, "days", 3650, "validity in days")
	f.StringVar(&o.parent, "parent", "", "CA directory that issues this CA (an intermediate); default a self-signed root")
	cmd.RegisterFlagCompletionFunc("key", cobra.FixedCompletions(keyTypeList(), cobra.ShellCompDirectiveNoFileComp))
	cmd.MarkFlagDirname("parent")
	return cmd
}

// caOptions are pki ca's flags.
type caOptions struct {
	key, subject, parent string
	days                 int
}

func pkiCA(dir string, o caOptions, out io.Writer) error {
	key, subject, days, parent := &o.key, &o.subject, &o.days, &o.parent
	kt, err := keyType(*key)
	if err != nil {
		return err
	}
	life := time.Duration(*days) * 24 * time.Hour
	if *parent == "" {
		ca, err := labca.MakeCA(dir, labca.CAOptions{Subject: *subject, Key: kt, Lifetime: life})
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "root CA %q (%s) in %s: %s, %s (0600)\n", pki.FormatDN(ca.Cert.RawSubject), kt, dir, labca.CACertFile, labca.CAKeyFile)
		return nil
	}
	up, err := labca.LoadCA(*parent)
	if err != nil {
		return err
	}
	upChain, err := caChain(*parent)
	if err != nil {
		return err
	}
	if *subject == "" {
		*subject = "C=CH, O=spugate lab, CN=spugate lab intermediate CA"
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	keyPath := filepath.Join(dir, labca.CAKeyFile)
	if _, err := os.Stat(keyPath); err == nil {
		return fmt.Errorf("pki: %s exists; remove it to make a new CA", keyPath)
	}
	ca, err := up.NewIntermediate(labca.Template{Subject: *subject, Key: kt, Lifetime: life})
	if err != nil {
		return err
	}
	if err := labca.WriteKeyPEM(keyPath, ca.Key); err != nil {
		return err
	}
	if err := labca.WriteCertPEM(filepath.Join(dir, labca.CACertFile), ca.Cert); err != nil {
		return err
	}
	if err := labca.WriteCertPEM(filepath.Join(dir, chainFile), append([]*x509.Certificate{ca.Cert}, upChain...)...); err != nil {
		return err
	}
	fmt.Fprintf(out, "intermediate CA %q (%s) issued by %q in %s: %s, %s (0600), %s\n", pki.FormatDN(ca.Cert.RawSubject), kt,
		pki.FormatDN(up.Cert.RawSubject), dir, labca.CACertFile, labca.CAKeyFile, chainFile)
	return nil
}

// caChain returns a CA directory's CA and those above it, to the root.
func caChain(dir string) ([]*x509.Certificate, error) {
	if _, err := os.Stat(filepath.Join(dir, chainFile)); err == nil {
		return pki.LoadCertificates(filepath.Join(dir, chainFile))
	}
	return pki.LoadCertificates(filepath.Join(dir, labca.CACertFile))
}

func (a *app) pkiIssueCommand() *cobra.Command {
	var o issueOptions
	cmd := &cobra.Command{
		Use:   "issue CADIR --id ID",
		Short: "Issue a gateway certificate from the CA in CADIR (and install it for iked)",
		Long: `Issue a gateway certificate for the IKE identity --id from the CA in CADIR:
NAME.pem and NAME.key next to the CA. --install also writes
CONFDIR/x509/NAME.pem (the certificate and the intermediates above it),
CONFDIR/private/NAME.key (0600) and CONFDIR/x509ca/<root>.pem, where iked's
configuration looks by default.`,
		Example: `  spuctl pki issue /etc/spugate/ca/intermediate --id gw-a.example --san 198.18.0.1 --install /etc/spugate`,
		Args:    cobra.ExactArgs(1),
		RunE:    func(_ *cobra.Command, args []string) error { return pkiIssue(args[0], o, a.out) },
	}
	f := cmd.Flags()
	f.StringVar(&o.id, "id", "", "the gateway's IKE identity (gw-a.example, @gw-a.example, 198.18.0.1, vpn@a.example, or a DN; required)")
	f.StringArrayVar(&o.sans, "san", nil, "another subjectAltName (repeatable), written as an identity")
	f.StringVar(&o.key, "key", string(labca.ECDSAP256), "key type: "+keyTypeNames())
	f.StringVar(&o.subject, "subject", "", "subject DN (default CN=<id>)")
	f.IntVar(&o.days, "days", 365, "validity in days")
	f.StringVar(&o.name, "name", "", "base name of the files (default: from the identity)")
	f.StringVar(&o.install, "install", "", "iked configuration folder to install into (x509/, private/, x509ca/)")
	cmd.RegisterFlagCompletionFunc("key", cobra.FixedCompletions(keyTypeList(), cobra.ShellCompDirectiveNoFileComp))
	cmd.MarkFlagDirname("install")
	cmd.MarkFlagRequired("id")
	return cmd
}

// issueOptions are pki issue's flags.
type issueOptions struct {
	id, key, subject, name, install string
	sans                            []string
	days                            int
}

func pkiIssue(dir string, o issueOptions, out io.Writer) error {
	id, sans, key, subject, days, name, install := &o.id, o.sans, &o.key, &o.subject, &o.days, &o.name, &o.install
	if *id == "" {
		return usagef("--id is required")
	}
	kt, err := keyType(*key)
	if err != nil {
		return err
	}
	certPath, keyPath, err := labca.IssueGateway(dir, labca.IssueOptions{Identity: *id, SANs: sans, Key: kt, Subject: *subject,
		Lifetime: time.Duration(*days) * 24 * time.Hour, Name: *name})
	if err != nil {
		return err
	}
	leaf, err := pki.LoadCertificates(certPath)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "certificate %q (%s) for %s: %s, %s (0600)\n", pki.FormatDN(leaf[0].RawSubject), kt, *id, certPath, keyPath)
	if *install == "" {
		return nil
	}
	chain, err := caChain(dir)
	if err != nil {
		return err
	}
	base := strings.TrimSuffix(filepath.Base(certPath), ".pem")
	// Our certificate file carries the intermediates, so that iked sends
	// them; the self-signed root goes to x509ca as the trust anchor.
	withChain := append([]*x509.Certificate(nil), leaf[0])
	var root *x509.Certificate
	for _, c := range chain {
		if bytes.Equal(c.RawSubject, c.RawIssuer) && c.CheckSignatureFrom(c) == nil {
			root = c
		} else {
			withChain = append(withChain, c)
		}
	}
	for _, d := range []string{"x509", "x509ca"} {
		if err := os.MkdirAll(filepath.Join(*install, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Join(*install, "private"), 0o700); err != nil {
		return err
	}
	keyData, err := os.ReadFile(keyPath)
	if err != nil {
		return err
	}
	dst := filepath.Join(*install, "x509", base+".pem")
	if err := labca.WriteCertPEM(dst, withChain...); err != nil {
		return err
	}
	kdst := filepath.Join(*install, "private", base+".key")
	if err := os.WriteFile(kdst, keyData, 0o600); err != nil {
		return err
	}
	if err := os.Chmod(kdst, 0o600); err != nil {
		return err
	}
	fmt.Fprintf(out, "installed %s (with %d intermediate(s)), %s (0600)", dst, len(withChain)-1, kdst)
	if root != nil {
		rdst := filepath.Join(*install, "x509ca", fileBase(pki.FormatDN(root.RawSubject))+".pem")
		if err := labca.WriteCertPEM(rdst, root); err != nil {
			return err
		}
		fmt.Fprintf(out, ", %s", rdst)
	}
	fmt.Fprintf(out, "\n  iked: local: {auth: pubkey, certs: [%s.pem], id: %q}\n", base, *id)
	return nil
}

func fileBase(dn string) string {
	cn := dn
	if i := strings.LastIndex(dn, "CN="); i >= 0 {
		cn = dn[i+3:]
	}
	var b strings.Builder
	for _, r := range cn {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	return b.String()
}

func keyTypeNames() string { return strings.Join(keyTypeList(), ", ") }

func keyTypeList() []string {
	var names []string
	for _, k := range labca.KeyTypes {
		names = append(names, string(k))
	}
	return names
}
