// Package regauth finds registry credentials the usual ways, once for every push
// meshplug makes (modules with oras-go, the controller image with go-containerregistry):
//
//   - explicit: a username and a password read from standard input
//     (--username/--password-stdin), never from a flag or the environment, which `ps`
//     and shell history show;
//   - the docker config file ($DOCKER_CONFIG/config.json, else ~/.docker/config.json, or
//     a given path): "auths" entries, and "credHelpers"/"credsStore", which run
//     docker-credential-<helper> as docker does (oras-go's credentials package).
//
// Credentials are never printed: errors name the registry and the source, not the
// secret.
package regauth

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/credentials"
)

// Options say where credentials come from.
type Options struct {
	// Username and Password, when Username is set, are used for every registry.
	Username, Password string
	// ConfigPath is a docker config file; empty means docker's default location.
	ConfigPath string
}

// ReadPassword reads the password from r (--password-stdin): the first line, without
// its line ending. An empty password is an error.
func ReadPassword(r io.Reader) (string, error) {
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("reading the password from standard input: %w", err)
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("--password-stdin: standard input holds no password")
	}
	return line, nil
}

// Store returns the credential store of o.
func Store(o Options) (credentials.Store, error) {
	if o.Username != "" {
		if o.Password == "" {
			return nil, errors.New("--username needs --password-stdin (the password is read from standard input)")
		}
		return staticStore{auth.Credential{Username: o.Username, Password: o.Password}}, nil
	}
	var (
		s   *credentials.DynamicStore
		err error
	)
	if o.ConfigPath != "" {
		s, err = credentials.NewStore(o.ConfigPath, credentials.StoreOptions{})
	} else {
		s, err = credentials.NewStoreFromDocker(credentials.StoreOptions{})
	}
	if err != nil {
		return nil, fmt.Errorf("docker config file: %w", err)
	}
	return s, nil
}

// CredentialFunc is store for oras-go's auth.Client.
func CredentialFunc(store credentials.Store) auth.CredentialFunc {
	return credentials.Credential(store)
}

// Keychain is store for go-containerregistry's remote.WithAuthFromKeychain.
func Keychain(store credentials.Store) authn.Keychain { return keychain{store} }

type keychain struct{ s credentials.Store }

func (k keychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	host := r.RegistryStr()
	if host == name.DefaultRegistry { // go-containerregistry's name for Docker Hub
		host = "docker.io"
	}
	c, err := k.s.Get(context.Background(), credentials.ServerAddressFromRegistry(host))
	if err != nil {
		return nil, fmt.Errorf("credentials for %s: %w", r.RegistryStr(), err)
	}
	if c == auth.EmptyCredential {
		return authn.Anonymous, nil
	}
	return authn.FromConfig(authn.AuthConfig{Username: c.Username, Password: c.Password,
		IdentityToken: c.RefreshToken, RegistryToken: c.AccessToken}), nil
}

// staticStore answers every registry with one credential (--username).
type staticStore struct{ c auth.Credential }

func (s staticStore) Get(context.Context, string) (auth.Credential, error) { return s.c, nil }
func (staticStore) Put(context.Context, string, auth.Credential) error {
	return errors.New("read-only")
}
func (staticStore) Delete(context.Context, string) error { return errors.New("read-only") }
