#!/bin/busybox sh
# /init of the venus-repro guest (busybox sh). The contract with the driver
# (driver/protocol.py reads it):
#
#  * Console markers, one per line: "@@VENUS-REPRO <event> key=value …" for
#    boot milestones, so the driver can wait for each with its own timeout.
#  * The exchange disk (/dev/vda, virtio-blk) carries a tar both ways: the
#    driver puts /in/plan (and any files a run adds) on it before boot; the
#    guest writes /out (facts, per-step logs and result lines, frames, dmesg)
#    back onto it as a tar before powering off. Results never depend on
#    scraping the console: the console may interleave kernel messages.
#  * Plan lines: "step <name> <timeout-seconds> <command> [args…]", and
#    "sync <name>": print a sync marker and wait for a line on the console (the
#    driver runs something on the host meanwhile, e.g. the host half of a benchmark).
#    Each step's stdout/stderr go to /out/<name>.out/.err and its exit status
#    to /out/<name>.status; the console shows its output live as well.
#  * vr.mode=shell on the kernel command line gives an interactive shell
#    instead of the plan (venus-repro boot).
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root
/bin/busybox mkdir -p /proc /sys /dev /tmp /run /root
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox mount -t tmpfs tmpfs /tmp
/bin/busybox mount -t tmpfs tmpfs /run
/bin/busybox --install -s 2>/dev/null
# A guest whose userspace is not under /usr (the Nix guest) says where it is.
[ -r /etc/venus-repro/env ] && . /etc/venus-repro/env

mark() { echo "@@VENUS-REPRO $*"; }
uptime_s() { cut -d' ' -f1 /proc/uptime; }
fact() { echo "$1=$2" >> /out/facts; }

mkdir -p /out /in
mark init uptime="$(uptime_s)"
# Quiet the console: kernel messages below KERN_ERR stay in dmesg only.
echo 4 > /proc/sys/kernel/printk

mode=run
xchg_in=0
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    vr.mode=*) mode="${arg#vr.mode=}" ;;
    vr.xchg_in=*) xchg_in="${arg#vr.xchg_in=}" ;;
  esac
done

fact kernel_release "$(uname -r)"
fact page_size_kb "$(grep -m1 KernelPageSize /proc/self/smaps | tr -s ' ' | cut -d' ' -f2)"
fact machine "$(uname -m)"
# Which Vulkan ICDs the guest holds, by sha256: the verdict checks a guest Mesa built from
# source is the one that ran (1.3 MB for Venus's: hashed in a few ms even under TCG).
icds=""
for f in /usr/lib/*/libvulkan_*.so; do
  [ -f "$f" ] && icds="$icds ${f##*/}=$(sha256sum "$f" | cut -d' ' -f1)"
done
fact vulkan_icds "${icds# }"
mark facts kernel="$(uname -r)" page_size_kb="$(grep -m1 KernelPageSize /proc/self/smaps | tr -s ' ' | cut -d' ' -f2)"

while read -r module; do
  [ -n "$module" ] || continue
  if ! insmod "$module" 2>/tmp/insmod.err; then
    mark module-failed module="$module" error="$(cat /tmp/insmod.err)"
  fi
done < /etc/venus-repro/modules
fact modules_loaded_uptime "$(uptime_s)"

# The render node appears once virtio-gpu has probed.
i=0
while [ ! -e /dev/dri/renderD128 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
if [ -e /dev/dri/renderD128 ]; then
  fact render_node /dev/dri/renderD128
  mark gpu render_node=/dev/dri/renderD128 uptime="$(uptime_s)"
else
  fact render_node none
  mark gpu render_node=none uptime="$(uptime_s)"
fi

finish() {
  dmesg > /out/dmesg.txt 2>&1
  fact finished_uptime "$(uptime_s)"
  if [ -b /dev/vda ]; then
    # /out must fit the exchange disk (with room for tar's headers): a larger tar
    # would be cut short, so say so instead and write nothing.
    kb=$(du -sk /out | cut -f1)
    limit_kb=$(( $(cat /sys/block/vda/size) / 2 * 9 / 10 ))
    if [ "$kb" -gt "$limit_kb" ]; then
      mark results-failed reason=too-large kb="$kb" limit_kb="$limit_kb"
    else
      (cd /out && tar -cf /dev/vda .) && mark results-written || mark results-failed reason=tar-failed
    fi
  else
    mark results-failed reason=no-exchange-disk
  fi
  sync
  mark poweroff uptime="$(uptime_s)"
  poweroff -f
}

# Read only the input tar (its size is on the command line): reading the whole
# disk would cost about a second under TCG.
if [ -b /dev/vda ] && [ "$xchg_in" -gt 0 ]; then
  dd if=/dev/vda bs=65536 count=$(( (xchg_in + 65535) / 65536 )) 2>/dev/null | tar -x -C /in 2>/dev/null \
    || mark plan-failed reason=unreadable-exchange-disk
fi

if [ "$mode" = shell ]; then
  mark shell
  echo "venus-repro guest shell; 'exit' (or Ctrl-D) powers the VM off."
  setsid cttyhack sh -l
  finish
fi

mark plan-start uptime="$(uptime_s)"
if [ -f /in/plan ]; then
  # fd 3 keeps the plan while steps own stdin.
  while read -r kind name timeout cmd <&3; do
    if [ "$kind" = sync ]; then
      mark sync name="$name"
      read -r _reply
      continue
    fi
    [ "$kind" = step ] || continue
    mark step-start name="$name" uptime="$(uptime_s)"
    start=$(uptime_s)
    # shellcheck disable=SC2086 # word splitting of the command is intended
    timeout -s KILL "$timeout" $cmd > /out/"$name".out 2> /out/"$name".err < /dev/null
    status=$?
    cat /out/"$name".out
    echo "$status" > /out/"$name".status
    echo "$start $(uptime_s)" > /out/"$name".time
    mark step-end name="$name" status="$status" uptime="$(uptime_s)"
  done 3< /in/plan
else
  mark plan-failed reason=no-plan
fi
finish
