# The molecule test image for EL 9 (AlmaLinux, Rocky Linux), built in CI where Docker Hub is reachable:
#   docker build -f tests/support/molecule-el9.Dockerfile --build-arg BASE_IMAGE=rockylinux:9 -t mlstack-molecule/el9:rocky .
# Like the Debian image (tests/support/molecule-image.sh) it holds only what systemd, Ansible and the
# fake_k3s_release test double need; the roles install everything else in converge.
ARG BASE_IMAGE=almalinux:9
FROM ${BASE_IMAGE}
# The EL base images move with each minor release; pinning package versions here would break the build
# at the next point release, and the roles under test pin nothing either.
# hadolint ignore=DL3041
RUN dnf -y install systemd python3 python3-pyyaml sudo procps-ng iproute \
    && dnf clean all \
    && systemctl mask dnf-makecache.timer \
    && : > /etc/machine-id
ENV container=docker
STOPSIGNAL SIGRTMIN+3
CMD ["/usr/sbin/init"]
