# Slipway exec wrapper (POSIX sh: busybox ash and dash). Runs inside the
# sandbox as uid 1000 once the job's files are in /work; records each phase in
# /work/.slipway/result/<phase>.{out,err,status} (/work/.slipway is a tmpfs of
# its own, so a program that fills /work or /tmp does not take the room of its
# results), then prints the result marker
# followed by a tar of the results and output/ on stdout, and exits (the
# container removes itself). Builtins only after a phase until its leftovers
# are killed, so a fork bomb cannot stop it.
M=/work/.slipway
R=$M/result
cd /work || exit 1
# Limits, commands and arguments of this job (shell-quoted by the server).
. "$M/job.env"

# Peak memory and OOM kills of this sandbox's memory cgroup (v2, else v1).
CG=/sys/fs/cgroup
if [ -r $CG/memory.peak ]; then
    CG_PEAK=$CG/memory.peak CG_EVENTS=$CG/memory.events
elif [ -r $CG/memory/memory.max_usage_in_bytes ]; then
    CG_PEAK=$CG/memory/memory.max_usage_in_bytes CG_EVENTS=$CG/memory/memory.oom_control
else
    CG_PEAK= CG_EVENTS=
fi
oom_kills() {
    OOMS=0
    if [ -n "$CG_EVENTS" ]; then
        while read -r k v; do
            if [ "$k" = oom_kill ]; then OOMS=$v; fi
        done < "$CG_EVENTS"
    fi
}
peak_kb() {
    PEAK=-
    if [ -n "$CG_PEAK" ] && read -r bytes < "$CG_PEAK"; then
        PEAK=$((bytes / 1024))
    fi
}

# The writable directories that cannot take one more byte ("-" when none):
# the program ran out of disk space there.
full_disks() {
    FULL=
    for d in /work /tmp; do
        if ! { printf x > "$d/.slipway-space"; } 2> /dev/null; then
            FULL=$FULL${FULL:+,}$d
        fi
        rm -f "$d/.slipway-space" 2> /dev/null
    done
    FULL=${FULL:--}
}

# phase NAME CPU_SECONDS WALL_SECONDS COMMAND INPUT [ARGS...]
phase() {
    name=$1 cpu=$2 wall=$3 cmd=$4 input=$5
    shift 5
    # Room for the status line, taken before the program runs: rewriting the
    # file reuses it even if the program filled this tmpfs too.
    printf '%1000s\n' '' > "$R/$name.status"
    oom_kills
    o0=$OOMS
    read up _ < /proc/uptime
    t0=${up%.*}${up#*.}
    (
        # The program, not this wrapper, is what the OOM killer should pick.
        { echo 1000 > /proc/self/oom_score_adj; } 2> /dev/null
        ulimit -t "$cpu"
        ulimit -f "$SW_FSIZE_BLOCKS"
        exec timeout -s KILL "$wall" sh -c "$cmd" sh "$@"
    ) < "$input" > "$R/$name.out" 2> "$R/$name.err"
    code=$?
    # Whatever the program left behind (background jobs, a fork bomb) dies here.
    kill -9 -1 2> /dev/null
    read up _ < /proc/uptime
    t1=${up%.*}${up#*.}
    peak_kb
    oom_kills
    full_disks
    echo "$code $(( (t1 - t0) * 10 )) $PEAK $((OOMS - o0)) $FULL" > "$R/$name.status"
}

finish() {
    echo SLIPWAY-EXEC-RESULT
    exec tar -cf - .slipway/result output 2> /dev/null
}

if [ -n "$SW_COMPILE" ]; then
    phase compile "$SW_COMPILE_CPU" "$SW_COMPILE_WALL" "$SW_COMPILE" /dev/null
    read code _ < "$R/compile.status"
    if [ "$code" != 0 ]; then
        finish
    fi
fi
phase run "$SW_RUN_CPU" "$SW_RUN_WALL" "$SW_RUN" "$M/stdin" "$@"
finish
