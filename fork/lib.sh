# Shared by the fork/ scripts: what the prepared tree is made of.
# Expects $top (the repository) and $here (fork/) to be set.
. "$here/pin"

# The patch files patches/series lists, in order.
series_patches() {
    sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$top/patches/series"
}

# A digest of the pin, the series and every patch it lists: the prepared
# tree is up to date when it was made from the same digest.  Exits the
# calling script when a listed patch is missing: the check runs before
# the pipeline, since an exit inside a pipeline only leaves its subshell
# (and the digest would silently cover part of the series).
wanted_id() {
    for p in $(series_patches); do
        [ -f "$top/patches/$p" ] || {
            echo "patches/series names missing $p" >&2; exit 1; }
    done
    {
        cat "$here/pin" "$top/patches/series"
        for p in $(series_patches); do
            cat "$top/patches/$p"
        done
    } | sha256sum | cut -d' ' -f1
}

pin_id() {
    sha256sum "$here/pin" | cut -d' ' -f1
}
