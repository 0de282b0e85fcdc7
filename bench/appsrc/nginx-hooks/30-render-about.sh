#!/bin/sh
# Renders the about page from its template with sed at start-up.
set -e
mkdir -p /usr/share/nginx/html/generated
sed -e "s/@GREETING@/${GREETING:-hello}/g" -e "s/@HOSTNAME@/$(hostname)/g" \
    /usr/share/nginx/page-templates/about.html.in > /usr/share/nginx/html/generated/about.html
echo "$0: wrote /usr/share/nginx/html/generated/about.html"
