#!/bin/sh
# ring-stress.sh N: run vkcube_anim N times back to back in this guest. Each run
# creates a Venus ring and idles it between frames, so each is a chance to lose
# a ring wakeup (see the venus-ring-stall finding). On the first failure, print
# the run's stderr (for diagnosis) and stop.
n=${1:?usage: ring-stress.sh N}
i=0
while [ "$i" -lt "$n" ]; do
  i=$((i + 1))
  timeout -s ABRT 30 env VN_DEBUG=init /opt/venus-repro/bin/vkcube_anim --frames 200 > /tmp/run.out 2> /tmp/run.err
  status=$?
  if [ "$status" -ne 0 ]; then
    echo "run $i of $n failed: exit status $status"
    cat /tmp/run.err
    exit 1
  fi
  [ $((i % 25)) -eq 0 ] && echo "$i runs passed"
done
echo "all $n runs passed"
