#!/bin/sh
# The `postfix` service of compose.yaml: Debian's Postfix, set up as
# contrib/postfix/main.cf.snippet describes, with sekimori-sizelimit from the
# `milters` service in front of it. Containers share no unix socket, so the
# milter is reached over TCP. Nothing is delivered: mail for example.net is
# accepted (or refused by the milter) and then discarded. A demo, not a
# production mail server.
set -eu

cat > /etc/postfix/main.cf <<'EOF'
compatibility_level = 3.6
myhostname = mx.sekimori.test
inet_interfaces = all
inet_protocols = ipv4
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
# Inbound mail for example.net from anyone; relaying for anything else stays
# refused (default smtpd_relay_restrictions). Accepted mail is thrown away.
relay_domains = example.net
relay_transport = discard:sekimori-demo
default_transport = discard:sekimori-demo
# No syslogd in a container: log to stdout (docker compose logs postfix).
maillog_file = /dev/stdout

# As contrib/postfix/main.cf.snippet.
smtpd_milters = inet:milters:8891
non_smtpd_milters = $smtpd_milters
milter_default_action = tempfail
milter_protocol = 6
milter_connect_timeout = 10s
milter_command_timeout = 30s
milter_content_timeout = 300s
message_size_limit = 0
hopcount_limit = 100
EOF

# Debian's master.cf runs smtpd and cleanup chrooted; a chrooted process here
# has no /etc/hosts to resolve "milters". Turn chroot off for every service.
postconf -F -e '*/*/chroot = n'

exec postfix start-fg
