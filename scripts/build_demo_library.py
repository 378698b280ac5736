"""Rebuild deploy/demo-library/: the licence-checked demo sounds that ship in the repository.

Every file comes from a source the shipped model (models/clapsearch-sfx-v2) never trained or tuned
on: the corpus split (training/corpus/build.py) holds out ``supertuxkart-data``, ``minetest-data``
and extra-sfx's ``runsy/petz`` as its test packages, and the corpus never reads the ``scratch``
package (training/corpus/sources.py), so the demo answers show honest quality. Only CC0, CC BY,
CC BY-SA and public-domain files are picked; the licence and author of each come from the
source's own licence list (supertuxkart: /usr/share/doc/supertuxkart-data/copyright, one stanza
per sound; minetest: the mods' README.txt "Authors of media" sections and debian/copyright;
petz: extra-sfx's manifest.csv; scratch: debian/copyright, ``Media/*`` is CC-BY-SA-3.0 (c) MIT).
Music, speech and weapons are left out.

Each file is decoded, mixed to mono, resampled to 22.05 kHz, cut to at most MAX_S seconds (long
ambiences) with a short fade-out, and written as Ogg Vorbis under a name that says what it is.
CREDITS.md (one row per file) is written from the same table.

    mkdir -p /tmp/demo-src && cd /tmp/demo-src && apt-get download supertuxkart-data minetest-data scratch
    python scripts/build_demo_library.py --debs /tmp/demo-src \
        --extra-sfx ../shared/data/extra-sfx --out deploy/demo-library

``--debs`` extracts the three .deb files found there (only their sound files) unless ``--stk-root``
/ ``--minetest-root`` / ``--scratch-root`` already point at extracted trees.
"""

from __future__ import annotations

import argparse
import glob
import html
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 22050
MAX_S = 15.0
FADE_S = 0.3

STK = "supertuxkart-data 1.4"  # /usr/share/games/supertuxkart/data/...
MT = "minetest-data 5.6.1"  # /usr/share/games/minetest/games/minetest_game/mods/...
PETZ = "extra-sfx runsy/petz"  # github.com/runsy/petz, petz/sounds/...
SCRATCH = "scratch 1.4.0.6"  # /usr/share/scratch/Media/Sounds/... (a package the corpus never reads)
SCRATCH_AUTHOR = "Scratch Team, MIT Media Lab (Scratch 1.4 media library)"

# One row a file, in CREDITS order: file name | what it is | source (a key of SOURCES) | path in the
# source | licence | author. Lines starting with "#" head a section.
_ROWS = """
# animals (petz; licences and authors from extra-sfx manifest.csv)
beaver_calling.ogg | a beaver calling | petz | petz_beaver_sound.ogg | CC0 | runs
bear_growl.ogg | a bear growling | petz | petz_grizzly_growl.ogg | CC BY (Freesound Attribution) | d1523825
cat_meow.ogg | a cat meowing | petz | petz_kitty_meow.ogg | CC BY (Freesound Attribution) | ebcrosby
cat_meow_2.ogg | a cat meowing | petz | petz_kitty_meow2.ogg | CC0 | FairhavenCollection
cat_meow_3.ogg | a cat meowing | petz | petz_kitty_meow3.ogg | Public domain | Alexander
cat_yowl.ogg | a cat yowling | petz | petz_kitty_moaning.ogg | CC BY (Freesound Attribution) | Taira Komori
chick_peeping.ogg | a chick peeping | petz | petz_chicken_chirp.ogg | CC0 | AGFX
chimpanzee_hooting.ogg | a chimpanzee hooting | petz | petz_chimp_hoo.ogg | CC0 | AntumDeluge
cow_lowing.ogg | a cow lowing | petz | petz_calf_moaning.ogg | CC0 | runs
cow_moo.ogg | a cow mooing | petz | petz_calf_moo.ogg | CC0 | runs
cow_moo_2.ogg | a cow mooing | petz | petz_calf_moo_2.ogg | CC BY 4.0 | Spanac
dog_whimper.ogg | a dog (puppy) whimpering | petz | petz_puppy_moaning.ogg | CC0 | apolloaiello
duck_quack.ogg | a duck quacking | petz | petz_ducky_quack.ogg | CC BY 4.0 | Alexander
frog_croak.ogg | a frog croaking | petz | petz_frog_croak.ogg | CC BY 3.0 | snottyboy
goat_bleat.ogg | a goat bleating | petz | petz_goat_bleat.ogg | CC0 | beskhu
hen_cluck.ogg | a hen clucking | petz | petz_hen_cluck_2.ogg | CC BY (Freesound Attribution) | www.bonson.ca
hen_cluck_2.ogg | a hen clucking | petz | petz_hen_cluck_3.ogg | CC BY (Freesound Attribution) | www.bonson.ca
hen_squawk.ogg | a hen squawking | petz | petz_hen_moaning.ogg | CC0 | Rudmer_Rotteveel
horse_gallop.ogg | a horse galloping | petz | petz_horse_gallop.ogg | CC0 | maugusto_sfx
horse_lip_blow.ogg | a horse blowing its lips | petz | petz_pony_blow_lips.ogg | CC BY (Freesound Attribution) | GoodListener
horse_neigh.ogg | a horse neighing | petz | petz_pony_neigh.ogg | CC BY (Freesound Attribution) | GoodListener
horse_snort.ogg | a horse snorting | petz | petz_pony_snort.ogg | CC0 | o_ciz
leopard_roar.ogg | a leopard roaring | petz | petz_leopard_roar.ogg | CC BY (Freesound Attribution) | CGEffex
lion_roar.ogg | a lion roaring | petz | petz_lion_roar.ogg | CC BY 3.0 | Mike Koenig
pig_grunt.ogg | a pig grunting | petz | petz_piggy_moaning.ogg | CC BY 3.0 | Caroline Ford
pig_oink.ogg | a pig oinking | petz | petz_piggy_oink.ogg | CC BY 3.0 | Mike Koenig
pig_squeal.ogg | a pig squealing | petz | petz_piggy_squeal.ogg | CC BY (Freesound Attribution) | yottasounds
pigeon_coo.ogg | a pigeon cooing | petz | petz_pigeon_cooing.ogg | CC0 | mcmalonzo
rooster_cluck.ogg | a rooster clucking | petz | petz_rooster_chirp.ogg | CC BY (Freesound Attribution) | Setuniman
rooster_crow.ogg | a rooster crowing | petz | petz_rooster_crow.ogg | CC BY (Freesound Attribution) | InspectorJ
sheep_bleat.ogg | a sheep (lamb) bleating | petz | petz_lamb_bleat.ogg | CC BY 4.0 | Alexander
sheep_bleat_2.ogg | a sheep (lamb) bleating | petz | petz_lamb_moaning.ogg | CC BY 4.0 | Alexander
squirrel_squeak.ogg | a squirrel squeaking | petz | petz_squirrel_squeak.ogg | CC BY 4.0 | Alexander
wolf_howl.ogg | a wolf howling | petz | petz_wolf_howl.ogg | Public domain | Alexander
brushing_bristle_brush.ogg | brushing with a bristle brush | petz | petz_brushing.ogg | CC0 | DJames619
cow_moo_pasture.ogg | a cow mooing outdoors | stk | tracks/black_forest/cow.ogg | CC BY-SA 3.0 | Secretlondon, Buffbill84
birds_jungle.ogg | exotic birds singing in a jungle | stk | sfx/exotic-birds.ogg | CC0 | James "swiftoid" Swift (freesound 182501)
birds_jungle_2.ogg | exotic birds singing in a jungle | stk | sfx/exotic-birds_2.ogg | CC0 | mpfeiffer, www.monoacustico.com (freesound 115758)
# water and weather
rain.ogg | rain falling | stk | sfx/rain.ogg | CC BY 3.0 | Mike Koenig (soundbible), cropped by Dawid "deveee" Gan
thunder_lightning_strike.ogg | a lightning strike and thunder | stk | sfx/thunder.ogg | CC BY 3.0 | Mike Koenig (soundbible 318), modified by Marianne "Auria" Gagnon
river_stream.ogg | a river flowing | stk | sfx/river_loop.ogg | CC0 | Adam Newns, vennaudio.com (freesound 166310)
waterfall.ogg | a waterfall | stk | sfx/waterfall_loop_2.ogg | CC0 | Leonard "VKProduktion" Graf (freesound 215711)
water_splash.ogg | something splashing into water | stk | sfx/splash.ogg | CC BY-SA 4.0 | The Audio Monkey; edited by OzoneOne
stream_flowing.ogg | a stream of water flowing | minetest | env_sounds/sounds/env_sounds_water.1.ogg | CC0 | Yuval (freesound 197023)
stream_flowing_2.ogg | a stream of water flowing | minetest | env_sounds/sounds/env_sounds_water.3.ogg | CC0 | Yuval (freesound 197023)
lava_bubbling.ogg | thick liquid (lava) bubbling | minetest | env_sounds/sounds/env_sounds_lava.1.ogg | CC0 | Halion (freesound 17785)
footsteps_wading_water.ogg | footsteps wading through water | minetest | default/sounds/default_water_footstep.1.ogg | CC BY 3.0 | AGFX (freesound pack 1253)
footsteps_wading_water_2.ogg | footsteps wading through water | minetest | default/sounds/default_water_footstep.3.ogg | CC BY 3.0 | AGFX (freesound pack 1253)
# fire
fire_crackling.ogg | a fire crackling | minetest | fire/sounds/fire_fire.1.ogg | CC BY 3.0 | Dynamicell (freesound 17548)
fire_crackling_large.ogg | a large fire crackling | minetest | fire/sounds/fire_large.ogg | CC BY 3.0 | Dynamicell (freesound 17548)
campfire_small.ogg | a small fire burning | minetest | fire/sounds/fire_small.ogg | CC BY 3.0 | dobroide (freesound 4211)
flint_and_steel.ogg | striking flint and steel | minetest | fire/sounds/fire_flint_and_steel.ogg | CC BY 3.0 | Benboncan (freesound 66457)
fuse_sparkler_burning.ogg | a fuse (sparkler) fizzing | minetest | tnt/sounds/tnt_ignite.ogg | CC0 | theneedle.tv (freesound 316682)
road_flare_igniting.ogg | a road flare igniting and burning | minetest | tnt/sounds/tnt_gunpowder_burning.ogg | CC0 | frankelmedico (freesound 348767)
furnace_roaring.ogg | a furnace burning | minetest | default/sounds/default_furnace_active.ogg | CC0 | iankath (freesound 173991)
fireworks.ogg | a fireworks show | stk | sfx/fireworks_show.ogg | CC0 | sl130594 (freesound 132273)
# footsteps
footstep_gravel.ogg | a footstep on gravel | minetest | default/sounds/default_gravel_footstep.2.ogg | CC BY-SA 3.0 | Mito551
footstep_gravel_2.ogg | a footstep on gravel | minetest | default/sounds/default_gravel_footstep.4.ogg | CC BY-SA 3.0 | Mito551
footstep_grass.ogg | a footstep on grass | minetest | default/sounds/default_grass_footstep.1.ogg | CC BY-SA 3.0 | Mito551
footstep_grass_2.ogg | a footstep on grass | minetest | default/sounds/default_grass_footstep.2.ogg | CC BY-SA 3.0 | Mito551
footstep_dirt.ogg | a footstep on dirt | minetest | default/sounds/default_dirt_footstep.1.ogg | CC BY-SA 3.0 | Mito551
footstep_wood.ogg | a footstep on wood | minetest | default/sounds/default_wood_footstep.1.ogg | CC BY-SA 3.0 | Mito551
footstep_snow.ogg | a footstep in snow | minetest | default/sounds/default_snow_footstep.2.ogg | CC0 | Ryding (freesound 94337)
footstep_snow_2.ogg | a footstep in snow | minetest | default/sounds/default_snow_footstep.4.ogg | CC0 | Ryding (freesound 94337)
footstep_sand.ogg | a footstep on sand | minetest | default/sounds/default_sand_footstep.1.ogg | CC0 | worthahep88 (freesound 319224)
footstep_sand_2.ogg | a footstep on sand | minetest | default/sounds/default_sand_footstep.3.ogg | CC0 | worthahep88 (freesound 319224)
footstep_stone.ogg | a footstep on a hard floor | minetest | default/sounds/default_hard_footstep.1.ogg | CC BY 3.0 | Erdie (freesound 41579)
footstep_ice.ogg | a footstep on ice | minetest | default/sounds/default_ice_footstep.1.ogg | CC BY 3.0 | InspectorJ (freesound 416967)
footstep_metal.ogg | a footstep on metal | minetest | default/sounds/default_metal_footstep.1.ogg | CC0 | mypantsfelldown (freesound 398937)
# doors and household
door_open.ogg | a wooden door opening | minetest | doors/sounds/doors_door_open.ogg | CC BY 3.0 | CGEffex, modified by BlockMen
door_close.ogg | a wooden door closing | minetest | doors/sounds/doors_door_close.ogg | CC BY 3.0 | bennstir
gate_open.ogg | a fence gate opening | minetest | doors/sounds/doors_fencegate_open.ogg | CC0 | mhtaylor67 (freesound 126041)
gate_close.ogg | a fence gate closing | minetest | doors/sounds/doors_fencegate_close.ogg | CC BY 3.0 | BarkersPinhead (freesound 274807), rivernile7 (freesound 249573)
steel_door_open.ogg | a steel door opening | minetest | doors/sounds/doors_steel_door_open.ogg | CC BY 3.0 | HazMatt (freesound 187283)
steel_door_close.ogg | a steel door closing | minetest | doors/sounds/doors_steel_door_close.ogg | CC BY 3.0 | HazMatt (freesound 187283)
sliding_glass_door_open.ogg | a glass door sliding open | minetest | doors/sounds/doors_glass_door_open.ogg | CC0 | SkeetMasterFunk69 (freesound 235546)
sliding_glass_door_close.ogg | a glass door sliding shut | minetest | doors/sounds/doors_glass_door_close.ogg | CC0 | SkeetMasterFunk69 (freesound 235546)
chest_lid_open.ogg | a wooden chest lid opening | minetest | default/sounds/default_chest_open.ogg | CC BY 3.0 | sofar, from Sevin7, Percy Duke, kingsamas, bulbastre, Yoyodaman234 (freesound)
chest_lid_close.ogg | a wooden chest lid closing | minetest | default/sounds/default_chest_close.ogg | CC BY 3.0 | sofar, from Sevin7, Percy Duke, kingsamas, bulbastre, Yoyodaman234 (freesound)
knocking_on_wood.ogg | knocking on wood | stk | sfx/wooden_bridge.ogg | Public domain | "Stephan" (pdsounds.org), modified by Marianne "Auria" Gagnon
clock_ticking.ogg | a clock ticking | stk | sfx/clock.ogg | Public domain | Natalie (pdsounds.org)
glass_breaking.ogg | glass breaking | minetest | default/sounds/default_break_glass.1.ogg | CC BY 3.0 | cmusounddesign (freesound 71947)
glass_breaking_2.ogg | glass breaking | minetest | default/sounds/default_break_glass.2.ogg | CC BY 3.0 | Tomlija (freesound 97669)
glass_breaking_3.ogg | glass breaking | minetest | default/sounds/default_break_glass.3.ogg | CC BY 3.0 | lsprice (freesound 88808)
balloon_inflating.ogg | a balloon being inflated | stk | sfx/inflate.ogg | CC BY 3.0 | neonaeon (freesound 16572)
bubble_gum_pop.ogg | a bubble-gum bubble popping | stk | sfx/bubblegum_explode.ogg | CC BY 3.0 | Percy Duke, jjhouse4 (freesound 23297, 197990)
plop.ogg | a short plop | stk | sfx/plopp.ogg | CC0 | pacomav (freesound 273792)
plunger_suction.ogg | a suction plunger | stk | sfx/plunger.ogg | CC BY-SA 3.0 | Mike Koenig (soundbible 845), modified by Marianne "Auria" Gagnon
squish_goo.ogg | something squishy and wet | stk | sfx/goo.ogg | CC BY 3.0 | Mike Koenig, Marianne "Auria" Gagnon
spring_boing.ogg | a comic spring boing | stk | sfx/boing.ogg | CC0 | vrodge (freesound 119518)
whip_crack.ogg | a whip cracking | stk | sfx/swatter.ogg | CC BY 3.0 | Snottyboi (soundbible 1375)
# tools and work
chopping_wood.ogg | an axe chopping wood | minetest | default/sounds/default_dig_choppy.1.ogg | CC0 | Sheyvan (freesound 476113)
chopping_wood_2.ogg | an axe chopping wood | minetest | default/sounds/default_dig_choppy.2.ogg | CC0 | Sheyvan (freesound 476113)
pickaxe_on_stone.ogg | a pick striking stone | minetest | default/sounds/default_dig_cracky.1.ogg | CC BY 3.0 | Benboncan (freesound 71823)
shovel_in_gravel.ogg | a shovel digging gravel | minetest | default/sounds/default_gravel_dig.1.ogg | CC0 | lolamadeus (freesound 179341)
ice_cracking.ogg | ice being hacked and cracking | minetest | default/sounds/default_ice_dig.1.ogg | CC BY 3.0 | dheming (freesound 268023)
metal_clank.ogg | a metal object being set down | minetest | default/sounds/default_place_node_metal.1.ogg | CC0 | Ogrebane (opengameart)
metal_clank_2.ogg | a metal object clanking | minetest | default/sounds/default_dug_metal.1.ogg | CC0 | Iwan "qubodup" Gabovitch
tool_snapping.ogg | a tool snapping | minetest | default/sounds/default_tool_breaks.2.ogg | CC BY 3.0 | HerbertBoland (freesound 33206)
chain_rattle.ogg | metal chains rattling and clanging | stk | sfx/metal_clang.ogg | CC BY 3.0 | dADDoiT, Mike Koenig; mixed by Marianne "Auria" Gagnon
machine_hum.ogg | a machine running | stk | sfx/machine_sound.ogg | CC BY 3.0 | Swelk (freesound 12906), modified by Marianne "Auria" Gagnon
radio_static.ogg | radio static | stk | sfx/static-radio.ogg | CC BY 3.0 | nicStage (freesound 1906), modified by Jean-Manuel "samuncle" Clémençon
# vehicles
car_accelerating.ogg | a car accelerating | stk | sfx/car_accel.ogg | CC BY 3.0 | "SpeedJunkie" (soundbible 1456)
car_engine_revving.ogg | a car engine revving, heard inside | stk | sfx/car_revup.ogg | CC BY 3.0 | Mike Koenig (soundbible 804)
car_horn.ogg | a car horn honking | stk | sfx/horn.ogg | CC BY 3.0 | Mike Koenig (soundbible 1048), edited by Marianne "Auria" Gagnon, Magne "Arthur" Djupvik
car_engine_idle.ogg | a small car engine running | stk | sfx/engine_small.ogg | CC BY-SA 3.0 | Iwan "qubodup" Gabovitch (opengameart)
truck_engine.ogg | a big engine (truck and compressor) | stk | sfx/engine_large.ogg | CC BY-SA 3.0 | Mike Koenig, "Stephan", "SpeedJunkie"; mixed by Marianne "Auria" Gagnon
tires_skidding.ogg | car tyres squealing | stk | sfx/skid.ogg | CC BY 3.0 | Tom "audible-edge" Haigh, Iwan "qubodup" Gabovitch
tires_skidding_2.ogg | car tyres skidding | stk | karts/sara_the_racer/skid.ogg | CC0 | Crystal
airplane_flyover.ogg | a jet airplane flying over | stk | sfx/airplane_jetEngine.ogg | CC BY-SA 3.0 | Fritz Schlüter (Wikimedia Commons)
steam_locomotive.ogg | a steam locomotive | stk | tracks/black_forest/steamLocomotive.ogg | CC BY-SA 3.0 | Daniel Simion
crash_impact.ogg | a short crash, something hard hit | stk | sfx/crash.ogg | CC BY-SA 4.0 | The Audio Monkey
# people, sport and places
applause.ogg | an audience applauding | stk | sfx/gp_end.ogg | CC BY 3.0 | Mike Koenig (soundbible 989)
restaurant_ambience.ogg | a busy restaurant: chatter and cutlery | stk | sfx/lenautile_restaurant.ogg | CC0 | "Alcappuccino" (freesound 263528)
bowling_ball_rolling.ogg | a bowling ball rolling | stk | sfx/bowling_roll.ogg | CC BY-SA 3.0 | daveincamas (freesound), Marianne "Auria" Gagnon
bowling_strike.ogg | a bowling strike, pins falling | stk | sfx/strike.ogg | CC BY-SA 3.0 | juskiddink (freesound 82358, 82359), mixed by Iwan "qubodup" Gabovitch
"""
# scratch 1.4, a package the corpus never reads; Media/* is CC BY-SA 3.0 per debian/copyright.
# One row a file, after the rows above: file name | what it is | path in the source.
_SCRATCH_ROWS = """
# animals
dog_bark.ogg | a dog barking | Animal/Dog1.wav
dog_bark_2.ogg | a dog barking | Animal/Dog2.wav
crickets_chirping.ogg | crickets chirping | Animal/Crickets.wav
owl_hoot.ogg | an owl hooting | Animal/Owl.wav
goose_honk.ogg | a goose honking | Animal/Goose.wav
sea_lion_bark.ogg | a sea lion barking | Animal/SeaLion.mp3
kitten_mewing.ogg | a kitten mewing | Animal/Kitten.wav
# water
bubbles_underwater.ogg | bubbles rising in water | Effects/Bubbles.wav
tap_water_running.ogg | water running from a tap | Effects/WaterRunning.mp3
water_drop.ogg | a drop of water falling | Effects/WaterDrop.mp3
# doors and household
door_creak.ogg | a door creaking open | Effects/DoorCreak.wav
door_slam.ogg | a door slamming shut | Effects/DoorClose.mp3
church_bell_toll.ogg | a church bell tolling | Effects/BellToll.wav
sewing_machine.ogg | a sewing machine | Effects/SewingMachine.mp3
typing_keyboard.ogg | typing on a keyboard | Effects/Typing.mp3
# vehicles
car_passing.ogg | a car driving past | Effects/CarPassing.wav
motorcycle_passing.ogg | a motorcycle driving past | Effects/MotorcyclePassing.wav
# footsteps
footsteps_walking.ogg | footsteps of someone walking | Human/Footsteps-1.wav
# people
baby_crying.ogg | a baby crying | Human/BabyCry.mp3
cough_man.ogg | a man coughing | Human/Cough-male.wav
cough_woman.ogg | a woman coughing | Human/Cough-female.wav
sneeze_man.ogg | a man sneezing | Human/Sneeze-male.wav
sneeze_woman.ogg | a woman sneezing | Human/Sneeze-female.wav
laughing_woman.ogg | a woman laughing | Human/Laugh-female.wav
laughing_man.ogg | a man laughing | Human/Laugh-male2.wav
finger_snap.ogg | fingers snapping | Human/FingerSnap.wav
slurping_drink.ogg | someone slurping a drink | Human/Slurp.mp3
"""
SOURCES = {"stk": STK, "minetest": MT, "petz": PETZ}


def _parse(rows: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.split(" | ")] for line in rows.splitlines() if line and line[0] != "#"]


# (file name, what it is, source, path in the source, licence, author). Order = CREDITS order.
SELECTION: list[tuple[str, str, str, str, str, str]] = [
    (name, what, SOURCES[source], path, licence, author) for name, what, source, path, licence, author in _parse(_ROWS)
] + [(name, what, SCRATCH, path, "CC BY-SA 3.0", SCRATCH_AUTHOR) for name, what, path in _parse(_SCRATCH_ROWS)]

ALLOWED_PREFIXES = ("CC0", "CC BY", "Public domain")

# Written next to the page (service/static/) so the page can link the credits from any install;
# generated from SELECTION like CREDITS.md, never edited by hand.
HTML_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <meta name="color-scheme" content="light dark">
  <title>Demo library credits - clapsearch</title>
  <link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
  <style>
    body {{ font: 15px/1.5 system-ui, sans-serif; margin: 1.5rem auto; max-width: 72rem; padding: 0 1rem; }}
    table {{ border-collapse: collapse; width: 100%; font-size: 0.85rem; }}
    th, td {{ text-align: left; vertical-align: top; padding: 0.3rem 0.5rem; border-bottom: 1px solid #8884; }}
    td:first-child {{ font-family: ui-monospace, monospace; white-space: nowrap; }}
    .wrap {{ overflow-x: auto; }}
    caption {{ position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); }}
  </style>
</head>
<body>
  <p><a href="/">&larr; back to search</a></p>
  <h1>Demo library credits</h1>
  <p>{intro}</p>
  <p>{sources}</p>
  <div class="wrap"><table>
    <caption>The {count} recordings of the demo library</caption>
    <thead><tr><th scope="col">File</th><th scope="col">What it is</th><th scope="col">Source</th><th scope="col">Licence</th><th scope="col">Author</th></tr></thead>
    <tbody>
{rows}
    </tbody>
  </table></div>
</body>
</html>
"""


def _extract(debs: Path, package: str, dest: Path) -> Path:
    found = sorted(glob.glob(str(debs / f"{package}_*.deb")))
    if not found:
        sys.exit(f"no {package}_*.deb in {debs} (apt-get download {package})")
    if not dest.is_dir():
        dest.mkdir(parents=True)
        tar = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", found[-1]], stdout=subprocess.PIPE)
        subprocess.run(
            ["tar", "-x", "-C", str(dest), "--wildcards", "*.ogg", "*.wav", "*.mp3", "*.txt", "*copyright"],
            stdin=tar.stdout,
            check=False,
        )
        tar.wait()
    return dest


def _convert(src: Path, dest: Path) -> float:
    audio, sr = sf.read(str(src), dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    if sr != SR:
        import soxr

        audio = soxr.resample(audio, sr, SR, quality="HQ").astype(np.float32)
    if len(audio) > MAX_S * SR:
        audio = audio[: int(MAX_S * SR)].copy()
        fade = int(FADE_S * SR)
        audio[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    audio = np.clip(audio, -1.0, 1.0)
    tmp = dest.with_name(dest.name + ".tmp")
    sf.write(str(tmp), audio, SR, format="OGG", subtype="VORBIS")
    # libsndfile picks a random Ogg stream serial, so the bytes change on every run: keep the
    # existing file when it decodes to the same samples (no churn in git for a rebuild).
    if dest.exists() and np.array_equal(sf.read(str(dest))[0], sf.read(str(tmp))[0]):
        tmp.unlink()
    else:
        tmp.replace(dest)
    return len(audio) / SR


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def credits_markdown(rows: list[str], total: float) -> list[str]:
    """CREDITS.md's lines: what the library is and where it comes from, then one table row a file."""
    return [
        "# Demo library credits",
        "",
        f"{len(SELECTION)} short recordings ({total / 60:.1f} minutes) used by `bash scripts/demo.sh`.",
        "None of them was used to train or tune the shipped model `models/clapsearch-sfx-v2`: they",
        "come from the corpus's held-out packages (`supertuxkart-data`, `minetest-data` and",
        "extra-sfx's `runsy/petz`) or from a package the corpus never reads (`scratch`). Each file",
        f"was converted to mono 22.05 kHz Ogg Vorbis, and long ones cut to {MAX_S:.0f} s, by",
        "`scripts/build_demo_library.py`; each keeps the licence its source gives it (named below;",
        "CC BY-SA files stay CC BY-SA). CC0 and public-domain files need no attribution; CC BY and",
        "CC BY-SA files need their authors named, which this file does.",
        "",
        "Sources: supertuxkart-data 1.4+dfsg-2 (Debian; per-file licences in",
        "`/usr/share/doc/supertuxkart-data/copyright`), minetest-data 5.6.1 (Debian; per-mod",
        '`README.txt` "Authors of media" and `/usr/share/doc/minetest-data/copyright`),',
        "petz by runsy (https://github.com/runsy/petz, per-sound licences in its `petz/sounds` credits),",
        "scratch 1.4.0.6~dfsg1 (Debian; `Media/*` is CC-BY-SA-3.0, (c) 2011 MIT, per",
        "`/usr/share/doc/scratch/copyright`).",
        "",
        "| File | What it is | Source | Licence | Author |",
        "|---|---|---|---|---|",
        *rows,
        "",
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--debs", type=Path, help="folder with supertuxkart-data and minetest-data .debs")
    ap.add_argument("--stk-root", type=Path, help="extracted supertuxkart-data (has usr/share/...)")
    ap.add_argument("--minetest-root", type=Path, help="extracted minetest-data (has usr/share/...)")
    ap.add_argument("--scratch-root", type=Path, help="extracted scratch package (has usr/share/...)")
    ap.add_argument("--extra-sfx", type=Path, default=Path("../shared/data/extra-sfx"))
    ap.add_argument("--out", type=Path, default=Path("deploy/demo-library"))
    ap.add_argument(
        "--credits-html",
        type=Path,
        default=Path("service/static/demo-credits.html"),
        help="the same credits as a page the web UI links to (served at /static/)",
    )
    args = ap.parse_args(argv)
    stk_root = args.stk_root or (args.debs and _extract(args.debs, "supertuxkart-data", args.debs / "stk"))
    mt_root = args.minetest_root or (args.debs and _extract(args.debs, "minetest-data", args.debs / "mt"))
    scratch_root = args.scratch_root or (args.debs and _extract(args.debs, "scratch", args.debs / "scratch"))
    if not stk_root or not mt_root or not scratch_root:
        ap.error("give --debs, or --stk-root, --minetest-root and --scratch-root")
    base = {
        STK: Path(stk_root) / "usr/share/games/supertuxkart/data",
        MT: Path(mt_root) / "usr/share/games/minetest/games/minetest_game/mods",
        PETZ: args.extra_sfx / "runsy__petz",
        SCRATCH: Path(scratch_root) / "usr/share/scratch/Media/Sounds",
    }
    names = [row[0] for row in SELECTION]
    assert len(names) == len(set(names)), "duplicate file names"
    for row in SELECTION:
        assert row[4].startswith(ALLOWED_PREFIXES), row
    args.out.mkdir(parents=True, exist_ok=True)
    for old in args.out.glob("*.ogg"):
        if old.name not in names:
            old.unlink()
    rows = []
    html_rows = []
    total = 0.0
    for name, what, source, path, licence, author in SELECTION:
        seconds = _convert(base[source] / path, args.out / name)
        total += seconds
        where = {STK: "data/", MT: "games/minetest_game/mods/", PETZ: "petz/sounds/", SCRATCH: "Media/Sounds/"}[
            source
        ] + path
        rows.append(f"| `{name}` | {_cell(what)} | {source}: `{where}` | {licence} | {_cell(author)} |")
        html_rows.append(
            "<tr>"
            + "".join(f"<td>{html.escape(v)}</td>" for v in (name, what, f"{source}: {where}", licence, author))
            + "</tr>"
        )
    credits = credits_markdown(rows, total)
    (args.out / "CREDITS.md").write_text("\n".join(credits), encoding="utf-8")
    args.credits_html.parent.mkdir(parents=True, exist_ok=True)
    args.credits_html.write_text(
        HTML_PAGE.format(
            count=len(SELECTION),
            intro=html.escape(" ".join(credits[2:10]).replace("`", "")),
            sources=html.escape(" ".join(credits[11:17]).replace("`", "")),
            rows="\n".join(html_rows),
        ),
        encoding="utf-8",
    )
    size = sum(p.stat().st_size for p in args.out.iterdir())
    print(f"{len(SELECTION)} files, {total:.0f} s of audio, {size / 1e6:.1f} MB in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
