# Shared by the fork/ scripts: what the prepared tree is made of.
# Expects $top (the repository) and $here (fork/) to be set.
. "$here/pin"

# The patch files patches/series lists, in order.
series_patches() {
    sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$top/patches/series"
}

# A digest of the pin, the series and every patch it lists: the prepared
# tree is up to date when it was made from the same digest.
wanted_id() {
    {
        cat "$here/pin" "$top/patches/series"
        for p in $(series_patches); do
            cat "$top/patches/$p" || {
                echo "patches/series names missing $p" >&2; exit 1; }
        done
    } | sha256sum | cut -d' ' -f1
}

pin_id() {
    sha256sum "$here/pin" | cut -d' ' -f1
}
