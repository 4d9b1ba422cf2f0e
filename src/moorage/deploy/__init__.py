"""The deploy: releases and the lock in Consul, the rolling update, and the commands' work."""
