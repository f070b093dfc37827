#!/usr/bin/env bash
# Makes `prometheus` and `promtool` available for the metrics tests (Debian package
# `prometheus`, 2.42 on bookworm). Idempotent: does nothing when both are on PATH.
# Installs without starting the Debian service: the tests start their own server.
set -euo pipefail

have_both() { command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; }

if ! have_both; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        if ! command -v sudo >/dev/null 2>&1; then
            echo "prometheus.sh: need root or sudo to install the 'prometheus' package" >&2
            exit 1
        fi
        sudo="sudo"
    fi
    echo "installing prometheus and promtool (Debian package 'prometheus') ..." >&2
    # policy-rc.d exit 101 tells invoke-rc.d not to start the packaged service; only add
    # one when none exists, and remove only our own.
    policy=/usr/sbin/policy-rc.d
    ours=""
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
        $sudo chmod 755 "$policy"
        ours=1
    fi
    cleanup() { if [ -n "$ours" ]; then $sudo rm -f "$policy"; fi; }
    trap cleanup EXIT
    export DEBIAN_FRONTEND=noninteractive
    if ! $sudo apt-get install -y --no-install-recommends prometheus >/dev/null; then
        $sudo apt-get update -qq
        $sudo apt-get install -y --no-install-recommends prometheus >/dev/null
    fi
    # Where systemd is absent nothing was started; where it is, keep the unit stopped.
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        $sudo systemctl disable --now prometheus >/dev/null 2>&1 || true
    fi
fi

if ! have_both; then
    echo "prometheus.sh: 'prometheus' installed but prometheus/promtool not on PATH" >&2
    exit 1
fi
echo "prometheus: $(command -v prometheus) ($(prometheus --version 2>&1 | head -n 1))"
echo "promtool:   $(command -v promtool)"
