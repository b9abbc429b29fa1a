package remote

import (
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// The environment variables a CI runner passes the SSH secrets in. The caller
// reads them (Config.Key, Config.KnownHosts, Config.Passphrase); messages name
// them so the fix is plain.
const (
	EnvKey        = "TALEDEPLOY_SSH_KEY"        // a private key's text
	EnvPassphrase = "TALEDEPLOY_SSH_PASSPHRASE" // the passphrase of an encrypted key
	EnvKnownHosts = "TALEDEPLOY_KNOWN_HOSTS"    // known_hosts lines
)

// keyring loads each private key once per Dial, so a jump host and the target
// that share a key ask for its passphrase once.
type keyring struct {
	cfg     Config // the target's: Key, Passphrase
	signers map[string]ssh.Signer
	agent   func() ([]ssh.Signer, error)
	close   func()
}

func newKeyring(cfg Config) *keyring {
	k := &keyring{cfg: cfg, signers: map[string]ssh.Signer{}, close: func() {}}
	if sock := os.Getenv("SSH_AUTH_SOCK"); sock != "" {
		if conn, err := net.Dial("unix", sock); err == nil {
			k.close = func() { conn.Close() }
			k.agent = agent.NewClient(conn).Signers
		}
	}
	return k
}

// authMethods offers, for one host on the way: the Key (when set, instead of
// identity files), else the host's identity files, then the ssh-agent's keys.
func (k *keyring) authMethods(hop Config) ([]ssh.AuthMethod, error) {
	var signers []ssh.Signer
	if len(k.cfg.Key) > 0 {
		s, err := k.load(hop, EnvKey)
		if err != nil {
			return nil, err
		}
		signers = append(signers, s)
	} else {
		for _, f := range hop.IdentityFiles {
			s, err := k.load(hop, f)
			if err != nil {
				return nil, err
			}
			signers = append(signers, s)
		}
	}
	if len(signers) == 0 && k.agent == nil {
		return nil, fmt.Errorf("%w: %s: no identity_file in the inventory or the ssh config, no %s and no ssh-agent (SSH_AUTH_SOCK); set one", ErrAuth, hop.Name, EnvKey)
	}
	agentSigners := k.agent
	return []ssh.AuthMethod{ssh.PublicKeysCallback(func() ([]ssh.Signer, error) {
		all := signers
		if agentSigners != nil {
			if more, err := agentSigners(); err == nil {
				all = append(append([]ssh.Signer{}, signers...), more...)
			}
		}
		return all, nil
	})}, nil
}

// load parses the key named name: EnvKey (the Key text) or a file. No message
// holds the key's text or its passphrase.
func (k *keyring) load(hop Config, name string) (ssh.Signer, error) {
	if s, ok := k.signers[name]; ok {
		return s, nil
	}
	var text []byte
	if name == EnvKey {
		text = k.cfg.Key
		if b, _ := pem.Decode(text); b == nil {
			return nil, fmt.Errorf("%s: %s holds no private key: put the whole key in it, from its -----BEGIN line to its -----END line", hop.Name, EnvKey)
		}
	} else {
		var err error
		if text, err = os.ReadFile(name); err != nil {
			return nil, localFile(fmt.Errorf("%s: read identity file: %w", hop.Name, err))
		}
	}
	s, err := ssh.ParsePrivateKey(text)
	var missing *ssh.PassphraseMissingError
	switch {
	case err == nil:
	case !errors.As(err, &missing) && name == EnvKey:
		// The parser's message might quote the text; it is not shown.
		return nil, fmt.Errorf("%s: %s holds a key taledeploy cannot read; it takes an OpenSSH or PEM private key (ed25519, ecdsa or rsa)", hop.Name, EnvKey)
	case !errors.As(err, &missing):
		return nil, localFile(fmt.Errorf("%s: parse identity file %s: %w", hop.Name, name, err))
	default:
		if s, err = k.decrypt(name, text); err != nil {
			return nil, err
		}
	}
	k.signers[name] = s
	return s, nil
}

func (k *keyring) decrypt(name string, text []byte) (ssh.Signer, error) {
	if k.cfg.Passphrase == nil {
		return nil, fmt.Errorf("%w: %s is encrypted; set %s or load the key into ssh-agent", ErrPassphrase, name, EnvPassphrase)
	}
	pass, err := k.cfg.Passphrase(name)
	if err != nil {
		return nil, fmt.Errorf("%w for %s: %w", ErrPassphrase, name, err)
	}
	s, err := ssh.ParsePrivateKeyWithPassphrase(text, pass)
	if err != nil {
		// The passphrase itself is never part of the message.
		return nil, fmt.Errorf("%w: %s: wrong passphrase or unreadable key", ErrPassphrase, name)
	}
	return s, nil
}
