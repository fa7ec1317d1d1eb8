# Slipway exec wrapper (POSIX sh: busybox ash and dash). Runs inside the
# sandbox as uid 1000 once the job's files are in /work; records each phase in
# /work/.slipway/<phase>.{out,err,status}, then prints the end marker and waits
# to be collected. Builtins only after a phase, so a fork bomb cannot stop it.
M=/work/.slipway
cd /work || exit 1

# phase NAME CPU_SECONDS WALL_SECONDS COMMAND INPUT [ARGS...]
phase() {
    name=$1 cpu=$2 wall=$3 cmd=$4 input=$5
    shift 5
    read up _ < /proc/uptime
    t0=${up%.*}${up#*.}
    (
        ulimit -t "$cpu"
        ulimit -f "$SW_FSIZE_BLOCKS"
        exec timeout -s KILL "$wall" sh -c "$cmd" sh "$@"
    ) < "$input" > "$M/$name.out" 2> "$M/$name.err"
    code=$?
    # Whatever the program left behind (background jobs, a fork bomb) dies here.
    kill -9 -1 2> /dev/null
    read up _ < /proc/uptime
    t1=${up%.*}${up#*.}
    echo "$code $(( (t1 - t0) * 10 ))" > "$M/$name.status"
}

if [ -n "$SW_COMPILE" ]; then
    phase compile "$SW_COMPILE_CPU" "$SW_COMPILE_WALL" "$SW_COMPILE" /dev/null
    read code _ < "$M/compile.status"
    if [ "$code" != 0 ]; then
        echo SLIPWAY-EXEC-DONE
        exec sleep 3600
    fi
fi
phase run "$SW_RUN_CPU" "$SW_RUN_WALL" "$SW_RUN" "$M/stdin" "$@"
echo SLIPWAY-EXEC-DONE
exec sleep 3600
