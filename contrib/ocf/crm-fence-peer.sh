#!/bin/sh
#
# crm-fence-peer.sh -- Tandem's fence-peer and unfence-peer handler for Pacemaker, in the role
# of DRBD's crm-fence-peer.9.sh. tandemd runs it (sh -c) with DRBD's handler environment.
#
# fence-peer: places a location constraint that lets only this node hold the Promoted role of
# the resource's promotable clone, so Pacemaker cannot promote the peer, whose data may be
# older, until the constraint is gone. Exit codes are DRBD's fence-peer contract:
#   4  the constraint is in place: the peer counts as Outdated
#   6  the peer is Promoted in the cluster: this node must not be (tandemd outdates itself)
#   1  anything else (no cluster, no clone for the resource, this node is the fenced one)
# unfence-peer (--unfence): removes the constraint once the peer is UpToDate again. Exit 0.
#
#   net { fencing resource-only; }
#   handlers {
#     fence-peer   "/usr/lib/tandem/crm-fence-peer.sh";
#     unfence-peer "/usr/lib/tandem/crm-fence-peer.sh --unfence";
#   }
#
# Options: --clone ID  the promotable clone (default: the clone of the ocf:tandem:tandem
#                      primitive whose resource parameter is $DRBD_RESOURCE)
#          --unfence   remove the constraint instead of placing it
#
# License: GPL-2.0-or-later (as Tandem).

PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH
mode=fence
clone=
while [ $# -gt 0 ]; do
	case "$1" in
	--unfence) mode=unfence ;;
	--clone) clone=${2:-}; shift ;;
	--clone=*) clone=${1#--clone=} ;;
	*) echo "crm-fence-peer: unknown option $1" >&2; exit 1 ;;
	esac
	shift
done

say() { echo "crm-fence-peer: $*" >&2; }

res=${DRBD_RESOURCE:-}
if [ -z "$res" ]; then
	say "DRBD_RESOURCE is not set: tandemd runs this as a fence-peer/unfence-peer handler"
	exit 1
fi
case "$res" in *[!A-Za-z0-9_.-]*) say "resource \"$res\": not a resource name"; exit 1 ;; esac
id="tandem-fence-$res"

if [ "$mode" = unfence ]; then
	if cibadmin -Q --xpath "//rsc_location[@id='$id']" >/dev/null 2>&1; then
		if ! cibadmin -D --xpath "//rsc_location[@id='$id']" >/dev/null; then
			say "could not remove constraint $id"
			exit 1
		fi
		say "removed constraint $id"
	fi
	exit 0
fi

me=$(crm_node -n 2>/dev/null) || me=$(uname -n)
if [ -z "$clone" ]; then
	# The clone whose ocf:tandem:tandem primitive manages this resource.
	clone=$(cibadmin -Q --xpath "//clone[primitive[@type='tandem'][instance_attributes/nvpair[@name='resource'][@value='$res']]]" 2>/dev/null |
		sed -n '1s/^<clone[^>]* id="\([^"]*\)".*/\1/p')
fi
if [ -z "$clone" ]; then
	say "no promotable clone of ocf:tandem:tandem with resource=$res in the CIB (use --clone)"
	exit 1
fi

# Already fenced: by this node (nothing to do) or, by the peer, this node (refuse).
existing=$(cibadmin -Q --xpath "//rsc_location[@id='$id']//expression" 2>/dev/null |
	sed -n 's/.* value="\([^"]*\)".*/\1/p')
if [ -n "$existing" ]; then
	if [ "$existing" = "$me" ]; then
		say "constraint $id already keeps every node but $me from promotion"
		exit 4
	fi
	say "constraint $id keeps this node ($me) from promotion: the peer $existing fenced it"
	exit 1
fi

# The peer holds the Promoted role right now: it is the Primary, this node must not be.
peer=${DRBD_PEER:-}
if [ -n "$peer" ] && crm_resource --locate --resource "$clone" 2>/dev/null |
	grep -q "running on: $peer Promoted\|running on: $peer Master"; then
	say "$peer is Promoted: not fencing it"
	exit 6
fi

xml="<rsc_location id=\"$id\" rsc=\"$clone\">
  <rule id=\"$id-rule\" role=\"Promoted\" score=\"-INFINITY\">
    <expression id=\"$id-expr\" attribute=\"#uname\" operation=\"ne\" value=\"$me\"/>
  </rule>
</rsc_location>"
if ! cibadmin -C -o constraints -X "$xml" >/dev/null; then
	say "could not place constraint $id"
	exit 1
fi
say "placed constraint $id: only $me may be Promoted for $clone"
exit 4
