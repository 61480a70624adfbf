# hoist — build, fixture images, tests, demo.
#   make            release build (target/release/hoist)
#   make images     pack the fixture images into target/images/*.tar (no network)
#   make test       install the Debian packages the tests need, build images, run every test tier
#   make lint       cargo fmt --check + clippy -D warnings
#   make fuzz       the randomized layer test for FUZZ_SECS seconds (default 600), seed FUZZ_SEED
#   make demo       the guided tour (see README)
#   make bench      hoist against podman, skopeo, umoci, runc and crun (see README "Benchmarks")
#   make install    binary, update timer, completions and man pages under $(DESTDIR)$(PREFIX)

CARGO    ?= cargo
HOIST    := target/release/hoist
IMAGEDIR := target/images
# Debian packages: libseccomp for the runner's seccomp support; fixture image contents; the
# reference extractor the tests compare with; systemd, dbus and util-linux for the testbed.
DEB_PKGS := libseccomp-dev pkg-config busybox-static etcd-server etcd-client umoci openssl \
            systemd dbus util-linux procps docker-registry skopeo apache2-utils gnupg curl

# What only `make test` needs: the image builder a built image is compared with.
TEST_PKGS := buildah

# The peers `make bench` compares with.
BENCH_PKGS := podman conmon skopeo umoci runc crun docker-registry busybox-static

IMAGES := $(IMAGEDIR)/hello.tar $(IMAGEDIR)/hello-v1.tar $(IMAGEDIR)/hello-v2.tar \
          $(IMAGEDIR)/hello-broken.tar $(IMAGEDIR)/etcd.tar $(IMAGEDIR)/layered.tar \
          $(IMAGEDIR)/registry.tar $(IMAGEDIR)/registry-v2.tar

.PHONY: all build deps pydeps images test lint fuzz demo bench clean install

# make install: PREFIX=/usr for a package, DESTDIR to stage; INSTALL_BIN to install another build.
PREFIX      ?= /usr/local
DESTDIR     ?=
INSTALL_BIN ?= $(HOIST)
BINDIR      := $(PREFIX)/bin
UNITDIR     := $(PREFIX)/lib/systemd/system
MANDIR      := $(PREFIX)/share/man/man1
SHAREDIR    := $(PREFIX)/share

all: build

build: deps
	$(CARGO) build --release --locked

# Idempotent: installs only what is missing (apt-get needs root, as the tests do).
deps:
	@missing=""; for p in $(DEB_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

# The image builder is built with the profile of whoever needs the images: debug for `make test`
# (dependencies optimised), release for `make demo`, so neither compiles the crate twice.
PROFILE ?= debug
MKIMAGE := target/$(PROFILE)/examples/mkimage
images: deps
	$(CARGO) build --locked --example mkimage $(if $(filter release,$(PROFILE)),--release)
	@mkdir -p $(IMAGEDIR)
	$(MKIMAGE) images/hello/image.json $(IMAGEDIR)/hello.tar
	$(MKIMAGE) images/hello/image.json $(IMAGEDIR)/hello-v1.tar
	$(MKIMAGE) images/hello/image-v2.json $(IMAGEDIR)/hello-v2.tar
	$(MKIMAGE) images/hello/image-broken.json $(IMAGEDIR)/hello-broken.tar
	$(MKIMAGE) images/etcd/image.json $(IMAGEDIR)/etcd.tar
	$(MKIMAGE) images/layered/image.json $(IMAGEDIR)/layered.tar
	$(MKIMAGE) images/registry/image.json $(IMAGEDIR)/registry.tar
	$(MKIMAGE) images/registry/image-v2.json $(IMAGEDIR)/registry-v2.tar

# Tiers: 1 — unit tests (lib) and tests/lifecycle.rs (fake systemd), any user; 2 — tests/images.rs,
# tests/runner.rs … (root, no systemd); 3 — units under a throwaway systemd (tests/testbed/testbed).
# Not root, tiers 2 and 3 skip (loudly); HOIST_PRIV_TESTS=1 makes that a failure, so here
# every tier must run.
# The signature tests' kit (tests/kit/*.py) writes cosign keys and sigstore attachments.
pydeps:
	@python3 -c 'import nacl, cryptography, ansible' 2>/dev/null || python3 -m pip install -q pynacl cryptography ansible-core

test: deps pydeps images
	@$(MAKE) --no-print-directory deps DEB_PKGS="$(TEST_PKGS)"
	HOIST_PRIV_TESTS=1 $(CARGO) test --locked -- --test-threads=2

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

# tests/randomized_layers.rs for longer: rounds of FUZZ_CASES random images until FUZZ_SECS
# have passed; a random seed unless FUZZ_SEED is given (it is printed on a failure).
FUZZ_SECS  ?= 600
FUZZ_CASES ?= 64
FUZZ_SEED  ?= $(shell od -An -N6 -tu8 /dev/urandom | tr -d ' ')
fuzz: deps
	HOIST_FUZZ_SECS=$(FUZZ_SECS) HOIST_FUZZ_CASES=$(FUZZ_CASES) HOIST_FUZZ_SEED=$(FUZZ_SEED) \
	  $(CARGO) test --locked --test randomized_layers -- --nocapture

# One cargo invocation for the binary and the image builder: built apart, they would get
# different feature sets (the builder is an example, so the tests' dev-dependencies and their
# features come with it) and the crate would be compiled twice.
demo: deps
	$(CARGO) build --release --locked --bin hoist --example mkimage
	@$(MAKE) --no-print-directory images PROFILE=release
	tests/demo.sh

# HOIST_BENCH_ROUNDS=N (default 5), HOIST_BENCH_ONLY=1,4 (case numbers).
bench: build
	@$(MAKE) --no-print-directory deps DEB_PKGS="$(BENCH_PKGS)"
	$(CARGO) bench --locked --bench compare

install:
	@test -x $(INSTALL_BIN) || $(MAKE) --no-print-directory build
	install -D -m 0755 $(INSTALL_BIN) $(DESTDIR)$(BINDIR)/hoist
	install -d -m 0755 $(DESTDIR)$(UNITDIR)
	for u in hoist-update.service hoist-update.timer; do \
	  sed 's|@BINDIR@|$(BINDIR)|g' units/$$u > $(DESTDIR)$(UNITDIR)/$$u && chmod 0644 $(DESTDIR)$(UNITDIR)/$$u || exit 1; \
	done
	install -d -m 0755 $(DESTDIR)$(SHAREDIR)/bash-completion/completions \
	  $(DESTDIR)$(SHAREDIR)/zsh/vendor-completions $(DESTDIR)$(SHAREDIR)/fish/vendor_completions.d
	$(INSTALL_BIN) completions bash > $(DESTDIR)$(SHAREDIR)/bash-completion/completions/hoist
	$(INSTALL_BIN) completions zsh > $(DESTDIR)$(SHAREDIR)/zsh/vendor-completions/_hoist
	$(INSTALL_BIN) completions fish > $(DESTDIR)$(SHAREDIR)/fish/vendor_completions.d/hoist.fish
	$(INSTALL_BIN) internal man-pages $(DESTDIR)$(MANDIR) >/dev/null
	gzip -9nf $(DESTDIR)$(MANDIR)/hoist*.1
	install -d -m 0755 $(DESTDIR)/etc/hoist/containers

clean:
	$(CARGO) clean
