"""``moorage lab``: real systemd machines (systemd-nspawn) on this host."""
