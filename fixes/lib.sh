# Shared by every fixes/<requirement>.sh: options, logging, guarded file writes, undo records.
# Sourced by the scripts when run by hand; prepended to them when --fix sends one to a host.
# POSIX sh (dash, busybox ash). Files are written under $IOMMU_AUDIT_ROOT (default /), so a
# copy of a host's files can be fixed and tested; sysfs and tools always act on the running host.
IOMMU_AUDIT_LIB=1
R=${IOMMU_AUDIT_ROOT:-}
R=${R%/}
DRY=0 UNDO=0 STEP_DIR= SHIFT=1
ADDRESS_RE='^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$'

say() { printf 'iommu-audit: %s\n' "$*"; [ -z "$STEP_DIR" ] || [ "$DRY" = 1 ] || printf '%s %s\n' "$(date -u +%FT%TZ)" "$*" >>"$STEP_DIR/log"; }
die() { code=$1; shift; say "FAILED: $*" >&2; [ -z "$STEP_DIR" ] || [ "$DRY" = 1 ] || echo failed >"$STEP_DIR/status"; exit "$code"; }

# Options every script takes. Use: while common_option "$@"; do shift $SHIFT; done
common_option() {
	SHIFT=1
	case ${1:-} in
	--dry-run) DRY=1 ;;
	--undo) UNDO=1 ;;
	--step-dir) [ $# -ge 2 ] || die 2 "--step-dir needs a directory"; STEP_DIR=$2; SHIFT=2 ;;
	-h | --help) usage; exit 0 ;;
	*) return 1 ;;
	esac
}

# Where this step keeps its record, backups and log (default: a fresh directory per hand run).
start_step() {
	[ "$DRY" = 1 ] && return 0
	if [ -z "$STEP_DIR" ]; then
		[ "$UNDO" = 0 ] || die 2 "--undo needs --step-dir (the directory of the step to undo)"
		STEP_DIR=$R/var/log/iommu-audit/by-hand-$(date -u +%Y%m%dT%H%M%SZ)-$$/$1
	fi
	held=$(readlink "$LOCK" 2>/dev/null)
	case $STEP_DIR in
	*/"${held%% *}"/*) [ -n "$held" ] ;; # a step of the --fix/--undo run that holds the lock
	*) false ;;
	esac || {
		sd=$STEP_DIR STEP_DIR= # a refusal must not mark the step's record as failed
		lock_take "by-hand-$$" "$(boot_id)" $$ "$(cat /proc/sys/kernel/hostname 2>/dev/null)"
		STEP_DIR=$sd
		trap 'lock_release by-hand-$$' EXIT
	}
	mkdir -p "$STEP_DIR/backup" || die 1 "cannot create $STEP_DIR"
	[ "$UNDO" = 1 ] || : >>"$STEP_DIR/record"
	echo running >"$STEP_DIR/status"
}
finish() { [ "$DRY" = 1 ] || echo "$1" >"$STEP_DIR/status"; say "$1"; exit 0; }

valid_address() { printf '%s\n' "$1" | grep -Eq "$ADDRESS_RE" || die 2 "'$1' is not a PCI address (DDDD:BB:DD.F)"; }

# run CMD ARG...: print it, run it (not under --dry-run), fail the step if it fails.
run() {
	say "run: $*"
	[ "$DRY" = 1 ] && return 0
	"$@" >>"$STEP_DIR/log" 2>&1 || die 1 "'$*' exited with $? (see $STEP_DIR/log)"
}
record() { [ "$DRY" = 1 ] || printf '%s\n' "$*" >>"$STEP_DIR/record"; }
# The record, last line first: undo walks back what the step did.
records_reversed() { [ -f "$STEP_DIR/record" ] && sed -n '1!G;h;$p' "$STEP_DIR/record"; }

# sha256 of a file's text without its trailing newlines (as the plan hashed the probe's copy).
sha() { if [ -e "$1" ]; then printf '%s' "$(cat "$1")" | sha256sum | cut -d' ' -f1; else echo absent; fi; }

# put_file PATH SHA256-OF-WHAT-THE-PLAN-SAW BASE64-CONTENT: back up, then replace atomically
# (temp file in the same directory, then rename). Refuses if the file changed since the plan.
put_file() {
	f=$R$1
	now=$(sha "$f")
	[ "$now" = "$2" ] || die 3 "$1 changed since the plan was made (sha256 $now, planned $2): audit again"
	[ "$DRY" = 1 ] && { say "would write $1"; return 0; }
	say "write $1 (backup in $STEP_DIR/backup$1)"
	backup "$1"
	mkdir -p "$(dirname "$f")" || die 1 "cannot create $(dirname "$1")"
	tmp=$f.iommu-audit.$$
	if [ -e "$f" ]; then cp -p "$f" "$tmp"; else : >"$tmp"; chmod 644 "$tmp"; fi || die 1 "cannot write $tmp"
	printf '%s' "$3" | base64 -d >"$tmp" || { rm -f "$tmp"; die 1 "cannot write $tmp"; }
	mv -f "$tmp" "$f" || { rm -f "$tmp"; die 1 "cannot replace $1"; }
}

# backup PATH: keep a copy (or note that it did not exist) once per step.
backup() {
	grep -qxF "file $1" "$STEP_DIR/record" 2>/dev/null && return 0
	if [ -e "$R$1" ]; then
		mkdir -p "$STEP_DIR/backup$(dirname "$1")" && cp -p "$R$1" "$STEP_DIR/backup$1" || die 1 "cannot back up $1"
	fi
	record "file $1"
}

# restore_file PATH: put the backup back atomically, or remove a file the step created.
restore_file() {
	if [ -e "$STEP_DIR/backup$1" ]; then
		say "restore $1"
		cp -p "$STEP_DIR/backup$1" "$R$1.iommu-audit.$$" && mv -f "$R$1.iommu-audit.$$" "$R$1" || die 1 "cannot restore $1"
	elif [ -e "$R$1" ]; then
		say "remove $1 (created by this step)"
		rm -f "$R$1" || die 1 "cannot remove $1"
	fi
}

# One change at a time per host: a --fix/--undo run holds $LOCK, a symlink whose target is the
# holder "RUN-ID SINCE HOST-BOOT-ID BY-BOOT-ID BY-PID BY-NAME" (ln -s is atomic and carries the
# text; dash and busybox both have it). /run is emptied at boot; a lock left by an earlier boot
# or by a dead process of this boot (a by-hand run, a local --fix) is taken over with a note.
LOCK=$R/run/iommu-audit.lock
boot_id() { cat /proc/sys/kernel/random/boot_id 2>/dev/null || echo unknown; }
# lock_stale HOLDER: why the holder no longer runs (nothing: it may still run).
lock_stale() {
	set -- $1
	[ $# -ge 6 ] || return 0
	if [ "$3" != "$(boot_id)" ]; then echo "the host rebooted since $2"
	elif [ "$4" = "$3" ] && ! kill -0 "$5" 2>/dev/null && [ ! -d "/proc/$5" ]; then echo "process $5 is gone"; fi
}
# lock_take RUN-ID BY-BOOT-ID BY-PID BY-NAME [HOLDER-KNOWN-GONE]: exit 3 with one line if another run holds it.
lock_take() {
	mkdir -p "${LOCK%/*}" 2>/dev/null
	me="$1 $(date -u +%FT%TZ) $(boot_id) $2 $3 $4" tries=0
	until ln -s "$me" "$LOCK" 2>/dev/null; do
		tries=$((tries + 1))
		held=$(readlink "$LOCK" 2>/dev/null)
		if [ -z "$held" ]; then [ $tries -le 3 ] && continue; die 1 "cannot create $LOCK"; fi
		why=$(lock_stale "$held")
		[ -z "$why" ] && [ "$held" = "${5:-}" ] && why="process $(echo "$held" | cut -d' ' -f5) on $(echo "$held" | cut -d' ' -f6-) is gone"
		if [ -z "$why" ] || [ $tries -gt 3 ]; then
			set -- $held
			die 3 "refused: run ${1:-?} holds $LOCK since ${2:-?} (from ${6:-?}, pid ${5:-?}): wait for it to finish; if that run is gone, rm $LOCK and try again (holder: $held)"
		fi
		say "note: $LOCK of run ${held%% *} is stale ($why): taking it over"
		mv -f "$LOCK" "$LOCK.stale.$$" 2>/dev/null && rm -f "$LOCK.stale.$$"
	done
	say "lock $LOCK taken for run $1"
}
# lock_release RUN-ID: only the run that holds the lock removes it.
lock_release() {
	held=$(readlink "$LOCK" 2>/dev/null) || return 0
	[ "${held%% *}" != "$1" ] || rm -f "$LOCK"
}

# PCI driver helpers (sysfs of the running host).
pci_dir() { echo "/sys/bus/pci/devices/$1"; }
driver_of() { d=$(pci_dir "$1")/driver; if [ -e "$d" ]; then basename "$(readlink "$d")"; else echo none; fi; }
override_of() { o=$(cat "$(pci_dir "$1")/driver_override" 2>/dev/null); [ "$o" = "(null)" ] && o=; echo "$o"; }

# host_use ADDRESS: how the host uses the device's disks right now (nothing: unused). The plan
# refused used devices already; this closes the window between the plan and the step.
host_use() {
	real=$(readlink -f "$(pci_dir "$1")")
	for b in /sys/class/block/*; do
		case $(readlink -f "$b") in "$real"/*) ;; *) continue ;; esac
		n=${b##*/}
		while read -r src dst rest; do
			case $src in /dev/*) [ "$(readlink -f "$src")" = "/dev/$n" ] && echo "/dev/$n is mounted on $dst" ;; esac
		done </proc/mounts
		grep -q "^/dev/$n " /proc/swaps 2>/dev/null && echo "/dev/$n is swap"
		[ -z "$(ls "$b/holders" 2>/dev/null)" ] || echo "/dev/$n is held by $(ls "$b/holders" | tr '\n' ' ')"
	done
}

# rebind ADDRESS OVERRIDE: the driverctl sequence: override, unbind, drivers_probe.
rebind() {
	printf '%s\n' "$2" | grep -Eq '^[A-Za-z0-9_-]*$' || die 2 "'$2' is not a driver name"
	run sh -c "printf '%s\n' '$2' > $(pci_dir "$1")/driver_override"
	if [ "$DRY" = 0 ] && [ -e "$(pci_dir "$1")/driver" ]; then
		run sh -c "printf '%s\n' '$1' > $(pci_dir "$1")/driver/unbind"
	fi
	run sh -c "printf '%s\n' '$1' > /sys/bus/pci/drivers_probe"
}
